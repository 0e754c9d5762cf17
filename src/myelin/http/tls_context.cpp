#include "myelin/http/tls_context.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include <boost/asio/ssl/context.hpp>
#include <fmt/format.h>

namespace myelin::http {
namespace {

namespace ssl = boost::asio::ssl;

constexpr std::string_view kCertificateKey = "listen.tls_certificate";
constexpr std::string_view kPrivateKeyKey = "listen.tls_private_key";
// Larger files are refused: a certificate chain or a key is a few KiB.
constexpr std::size_t kMaxFileBytes = 1024 * 1024;

Error tls_error(std::string_view key, const std::filesystem::path& path, std::string_view problem) {
    return errors::make(
        500, "M_UNKNOWN",
        fmt::format("config key '{}' names '{}', which {}", key, path.string(), problem));
}

// Holds bytes read from a key file; wipes them when it goes.
struct SecretBytes {
    std::string bytes;
    SecretBytes() = default;
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    ~SecretBytes() {
        if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
    }
};

struct BioDeleter {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
    void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr memory_bio(const std::string& bytes) {
    return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// Reads a whole regular file; `refuse_other_access` refuses one whose mode grants anything to
// "others". Errors name the config key and the path.
Result<void> read_file(std::string_view key, const std::filesystem::path& path,
                       bool refuse_other_access, std::string& out) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return tls_error(key, path, fmt::format("cannot be read ({})", std::strerror(errno)));
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return tls_error(key, path, fmt::format("cannot be read ({})", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode)) return tls_error(key, path, "is not a regular file");
    if (refuse_other_access && (st.st_mode & S_IRWXO) != 0) {
        return tls_error(key, path,
                         fmt::format("is accessible by others (mode {:04o}); expected a private "
                                     "key only its owner (and group) can read: chmod o-rwx",
                                     static_cast<unsigned>(st.st_mode & 07777)));
    }
    if (static_cast<std::size_t>(st.st_size) > kMaxFileBytes) {
        return tls_error(key, path, "is larger than 1 MiB; expected a PEM file");
    }
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            return tls_error(key, path, fmt::format("cannot be read ({})", std::strerror(errno)));
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    out.resize(got);
    return {};
}

// OpenSSL's password callback: there is no terminal to ask, so an encrypted key fails to load
// instead of blocking the server on a prompt.
int no_password(char*, int, int, void*) { return 0; }

// ALPN: the server speaks HTTP/1.1 only. A client that offers it gets it; one that offers only
// other protocols gets no ALPN answer (and decides itself whether to go on).
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                unsigned int in_length, void*) {
    static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* selected = nullptr;
    unsigned char length = 0;
    if (SSL_select_next_proto(&selected, &length, kHttp11, sizeof kHttp11, in, in_length) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = selected;
    *out_length = length;
    return SSL_TLSEXT_ERR_OK;
}

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

// "subject CN=example.org, expires Jan  1 00:00:00 2030 GMT, sha256 AB:CD:…".
std::string describe(X509* certificate) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    std::string subject = "?";
    std::string expires = "?";
    if (bio && X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0,
                                  XN_FLAG_RFC2253) >= 0) {
        subject = bio_text(bio.get());
    }
    BioPtr time_bio(BIO_new(BIO_s_mem()));
    if (time_bio && ASN1_TIME_print(time_bio.get(), X509_get0_notAfter(certificate)) == 1) {
        expires = bio_text(time_bio.get());
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    std::string fingerprint;
    if (X509_digest(certificate, EVP_sha256(), digest, &digest_length) == 1) {
        for (unsigned int i = 0; i < digest_length; ++i) {
            if (i) fingerprint += ':';
            fingerprint += fmt::format("{:02X}", digest[i]);
        }
    }
    return fmt::format("subject {}, expires {}, sha256 {}", subject, expires, fingerprint);
}

}  // namespace

TlsContext::TlsContext(std::unique_ptr<ssl::context> context, std::string summary, bool expired)
    : context_(std::move(context)), summary_(std::move(summary)), expired_(expired) {}

TlsContext::~TlsContext() = default;

Result<std::shared_ptr<TlsContext>> TlsContext::load(const std::filesystem::path& certificate,
                                                     const std::filesystem::path& private_key) {
    std::string chain;
    if (auto r = read_file(kCertificateKey, certificate, false, chain); !r) return r.error();
    SecretBytes key_bytes;
    if (auto r = read_file(kPrivateKeyKey, private_key, true, key_bytes.bytes); !r) {
        return r.error();
    }

    BioPtr chain_bio = memory_bio(chain);
    X509Ptr leaf(chain_bio ? PEM_read_bio_X509(chain_bio.get(), nullptr, no_password, nullptr)
                           : nullptr);
    if (!leaf) {
        return tls_error(kCertificateKey, certificate,
                         "holds no PEM certificate; expected the server's certificate (then its "
                         "intermediates)");
    }
    BioPtr key_bio = memory_bio(key_bytes.bytes);
    PkeyPtr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_password, nullptr)
                        : nullptr);
    ERR_clear_error();
    if (!key) {
        return tls_error(kPrivateKeyKey, private_key,
                         "holds no unencrypted PEM private key; expected the certificate's key "
                         "without a passphrase");
    }
    if (X509_check_private_key(leaf.get(), key.get()) != 1) {
        ERR_clear_error();
        return tls_error(kPrivateKeyKey, private_key,
                         fmt::format("does not belong to the certificate in '{}'; expected the "
                                     "private key of that certificate",
                                     certificate.string()));
    }

    std::unique_ptr<ssl::context> context;
    try {
        context = std::make_unique<ssl::context>(ssl::context::tls_server);
    } catch (const std::exception& e) {
        return errors::internal(std::string("cannot create a TLS context: ") + e.what());
    }
    SSL_CTX* native = context->native_handle();
    SSL_CTX_set_default_passwd_cb(native, no_password);
    context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                         ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    // Idle keep-alive connections give their read and write buffers back.
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
    boost::system::error_code ec;
    context->use_certificate_chain(boost::asio::buffer(chain), ec);
    if (ec) {
        ERR_clear_error();
        return tls_error(kCertificateKey, certificate,
                         fmt::format("holds no usable PEM certificate chain ({})", ec.message()));
    }
    if (SSL_CTX_use_PrivateKey(native, key.get()) != 1 || SSL_CTX_check_private_key(native) != 1) {
        ERR_clear_error();
        return tls_error(kPrivateKeyKey, private_key,
                         fmt::format("does not belong to the certificate in '{}'; expected the "
                                     "private key of that certificate",
                                     certificate.string()));
    }
    const bool expired = X509_cmp_current_time(X509_get0_notAfter(leaf.get())) < 0 ||
                         X509_cmp_current_time(X509_get0_notBefore(leaf.get())) > 0;
    return std::shared_ptr<TlsContext>(
        new TlsContext(std::move(context), describe(leaf.get()), expired));
}

}  // namespace myelin::http
