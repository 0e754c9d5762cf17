#pragma once

// Internal to the HTTP server: the interface between Server (server.hpp) and its two builds,
// the plain-HTTP one (server.cpp) and the TLS one (tls_server.cpp, the same code compiled with
// TLS connections). Server forwards its calls here; nothing per request goes through it.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "myelin/core/error.hpp"
#include "myelin/http/server.hpp"

namespace myelin::http::detail {

// The contract of each call is that of the Server method of the same name.
class ServerCore {
public:
    virtual ~ServerCore() = default;
    virtual Result<void> start() = 0;
    virtual void stop() = 0;
    virtual void wait() = 0;
    virtual std::uint16_t port_number() const = 0;
    virtual std::size_t open_connections() const = 0;
    virtual Result<void> set_tls_context(std::shared_ptr<TlsContext> context) = 0;
    virtual std::size_t read_buffer_bytes() = 0;
};

// A plain-HTTP server (options.tls is ignored).
std::unique_ptr<ServerCore> make_plain_server(ServerOptions options, Dispatcher& dispatcher);
// An HTTPS server; options.tls must hold the first context.
std::unique_ptr<ServerCore> make_tls_server(ServerOptions options, Dispatcher& dispatcher);

}  // namespace myelin::http::detail
