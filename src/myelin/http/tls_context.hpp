#pragma once

// The server side of native TLS: one OpenSSL context built from a PEM certificate chain and its
// private key, with the server's fixed settings (TLS 1.2 minimum, OpenSSL's default ciphers,
// ALPN "http/1.1", no renegotiation). The server holds the current context in a shared_ptr that
// SIGHUP replaces; every TLS connection keeps the context it was accepted with, so a reload
// never touches an open connection.

#include <filesystem>
#include <memory>
#include <string>

#include "myelin/core/error.hpp"

namespace boost::asio::ssl {
class context;
}

namespace myelin::http {

class TlsContext {
public:
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    // Reads both files and builds a context. Fails, with a message that starts "config key
    // 'listen.tls_…'" and names the file (never its content), when a file cannot be read, the
    // private key file is accessible by others (any "other" permission bit), a file holds no
    // usable PEM certificate or key (an encrypted key counts as unusable: there is nobody to ask
    // for its passphrase), or the key does not belong to the certificate. An expired
    // certificate loads (see expired()): clients refuse it, but the server keeps running. Does
    // blocking file I/O: call it from the main or the signal thread, not a network thread. Key
    // bytes read into memory are wiped before it returns.
    static Result<std::shared_ptr<TlsContext>> load(const std::filesystem::path& certificate,
                                                    const std::filesystem::path& private_key);

    // The OpenSSL context for new connections. Thread-safe for creating connections (OpenSSL
    // reference-counts it); it is never modified after load().
    boost::asio::ssl::context& native() { return *context_; }

    // For logs: the certificate's subject, expiry and SHA-256 fingerprint (public data only).
    const std::string& summary() const { return summary_; }
    // Whether the certificate is outside its validity period at load time.
    bool expired() const { return expired_; }

private:
    TlsContext(std::unique_ptr<boost::asio::ssl::context> context, std::string summary,
               bool expired);

    std::unique_ptr<boost::asio::ssl::context> context_;
    std::string summary_;
    bool expired_;
};

}  // namespace myelin::http
