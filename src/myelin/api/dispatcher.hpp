#pragma once

// Connects the HTTP server to the route table: answers OPTIONS preflights, 404/405 with
// M_UNRECOGNIZED, resolves the access token before the handler runs (from the cache without
// waiting when it can), calls the handler, and renders errors as Matrix JSON.
// Thread-safety: called concurrently by every network thread; holds no mutable state itself.

#include <optional>

#include "myelin/api/router.hpp"
#include "myelin/http/server.hpp"
#include "myelin/service/session_service.hpp"

namespace myelin::api {

class ClientDispatcher final : public http::Dispatcher {
public:
    ClientDispatcher(const Router& router, service::SessionService& sessions,
                     std::size_t default_body_limit);

    std::optional<std::size_t> body_limit(http::Method method,
                                          std::string_view path) const override;
    std::optional<http::Response> handle_now(http::Request& request) override;
    boost::asio::awaitable<http::Response> handle(http::Request& request) override;

private:
    // The token the request carries (Authorization: Bearer, or the deprecated access_token
    // query parameter), nullopt when none, or an error when both are given.
    static Result<std::optional<std::string_view>> extract_token(const http::Request& request);
    std::optional<http::Response> answer_without_route(const Router::Match& match,
                                                       const http::Request& request) const;

    const Router& router_;
    service::SessionService& sessions_;
    std::size_t default_body_limit_;
};

// Renders a handler's result, adding what the access log should name as the user.
http::Response render(Result<http::Response> result, const service::Identity* identity);

}  // namespace myelin::api
