#pragma once

// The HTTP/1.1 server: Boost.Beast on C++20 coroutines, one io_context per network thread, each
// with its own SO_REUSEPORT acceptor. It reads requests within the configured limits, asks the
// Dispatcher for the route's body limit, hands the complete Request to the Dispatcher, adds CORS
// and X-Request-Id to every response, writes one access-log line per request, and keeps the
// connection alive while the client wants (while the Dispatcher's handle() runs, which may be
// minutes for a /sync long-poll, a connection holds no read buffer nor parser: only the bytes of
// pipelined requests it already read). With ServerOptions::tls it speaks HTTPS instead
// (TLS 1.2+, see tls_context.hpp), from a separate build of the same code, so the plain-HTTP
// path does no TLS work at all. start(), stop() and wait() are called from the main thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "myelin/http/request.hpp"
#include "myelin/http/response.hpp"

namespace myelin::http {

class TlsContext;
namespace detail {
class ServerCore;
}

struct ServerLimits {
    std::size_t max_header_bytes = 16 * 1024;           // larger: 431
    std::size_t default_body_bytes = 64 * 1024;         // for routes without their own limit: 413
    std::chrono::milliseconds request_timeout{30'000};  // to read one whole request: 408
    std::chrono::milliseconds idle_timeout{75'000};     // keep-alive wait for the next request
    std::chrono::milliseconds write_timeout{30'000};
    std::size_t max_connections = 10'000;  // beyond: 503 + Retry-After, then close
    // Connections one client address may hold at once (0: no cap); beyond: 429 M_LIMIT_EXCEEDED,
    // then close. Addresses are grouped by address_key(peer address as text) when it is set (an
    // empty key: never capped, e.g. a trusted reverse proxy); it runs on network threads.
    std::size_t max_connections_per_address = 0;
    std::function<std::string(std::string_view)> address_key;
    std::chrono::milliseconds shutdown_grace{10'000};  // in-flight requests may finish within this
};

struct ServerOptions {
    std::string address = "127.0.0.1";
    std::uint16_t port = 8008;  // 0: pick a free port (see Server::port())
    unsigned threads = 0;       // network threads; 0: one per core
    ServerLimits limits;
    bool access_log = true;
    // Native TLS: every connection does a TLS handshake (from this context, replaceable with
    // Server::set_tls_context) before its first request. Null: plain HTTP.
    std::shared_ptr<TlsContext> tls;
};

// What the server needs from the application. Implementations must be thread-safe: every
// network thread calls them concurrently.
class Dispatcher {
public:
    virtual ~Dispatcher() = default;
    // The body limit in bytes for a request with this method and (decoded) path, decided before
    // the body is read; nullopt: the server's default.
    virtual std::optional<std::size_t> body_limit(Method method, std::string_view path) const = 0;
    // Answers without waiting when it can (no storage, no hashing): nullopt means "call
    // handle()". Must not block.
    virtual std::optional<Response> handle_now(Request& request) = 0;
    // Answers the request; may await storage or worker pools. Must not block the thread.
    // Exceptions escaping it become a 500 M_UNKNOWN with the request id.
    virtual boost::asio::awaitable<Response> handle(Request& request) = 0;
};

class Server {
public:
    Server(ServerOptions options, Dispatcher& dispatcher);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and starts the network threads. Returns an error (e.g. address in use) without
    // starting anything on failure.
    Result<void> start();
    // The bound port (useful when options.port was 0). Valid after start().
    std::uint16_t port() const;
    // Stops accepting, lets in-flight requests finish within limits.shutdown_grace, then closes
    // every connection. Safe to call from a signal-handling thread; idempotent.
    void stop();
    // Blocks until the network threads have exited (after stop()).
    void wait();
    // Connections open right now.
    std::size_t open_connections() const;
    // The memory the connections hold right now for reading requests: their read buffers'
    // capacity and header parsers (for tests and diagnostics). Counted on each network thread,
    // so it blocks until each has answered (up to 5 s each); 0 before start() and after stop().
    std::size_t read_buffer_bytes();
    // TLS servers only: connections accepted from now on use `context`; open ones keep the one
    // they were accepted with. Thread-safe (called from the signal thread on SIGHUP). Fails on
    // a plain-HTTP server or a null context.
    Result<void> set_tls_context(std::shared_ptr<TlsContext> context);

private:
    std::unique_ptr<detail::ServerCore> impl_;  // the plain or the TLS build (server.cpp)
};

}  // namespace myelin::http
