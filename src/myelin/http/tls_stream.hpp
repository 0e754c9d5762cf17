#pragma once

// The stream of one native-TLS connection: an Asio SSL stream over a TCP socket that also owns
// a reference to the TlsContext it was created from, so that a SIGHUP reload, which replaces the
// server's current context, never frees the one an open connection uses. Used by the HTTP
// server's Connection template on its worker's thread only; it is the plain path's tcp::socket
// for TLS connections.

#include <memory>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "myelin/http/tls_context.hpp"

namespace myelin::http {

namespace detail {
// Base-from-member: the context must exist before the SSL stream is built from it, and outlive
// it.
struct TlsContextHolder {
    std::shared_ptr<TlsContext> tls_context;
};
}  // namespace detail

class TlsStream : private detail::TlsContextHolder,
                  public boost::asio::ssl::stream<boost::asio::ip::tcp::socket> {
public:
    // Wraps an accepted socket; the handshake is the caller's (async_handshake as server).
    TlsStream(boost::asio::ip::tcp::socket socket, std::shared_ptr<TlsContext> context)
        : detail::TlsContextHolder{std::move(context)},
          boost::asio::ssl::stream<boost::asio::ip::tcp::socket>(std::move(socket),
                                                                 tls_context->native()) {}
};

}  // namespace myelin::http
