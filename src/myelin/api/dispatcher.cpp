#include "myelin/api/dispatcher.hpp"

#include <strings.h>

namespace myelin::api {

ClientDispatcher::ClientDispatcher(const Router& router, service::SessionService& sessions,
                                   std::size_t default_body_limit)
    : router_(router), sessions_(sessions), default_body_limit_(default_body_limit) {}

std::optional<std::size_t> ClientDispatcher::body_limit(http::Method method,
                                                        std::string_view path) const {
    auto m = router_.match(method, path);
    if (m.route && m.route->body_limit > 0) return m.route->body_limit;
    return default_body_limit_;
}

http::Response render(Result<http::Response> result, const service::Identity* identity) {
    http::Response response = result ? std::move(*result) : http::error_response(result.error());
    if (identity) response.log_user = identity->user_id();
    return response;
}

Result<std::optional<std::string_view>> ClientDispatcher::extract_token(
    const http::Request& request) {
    std::optional<std::string_view> from_header;
    if (!request.authorization.empty()) {
        std::string_view h = request.authorization;
        if (h.size() > 7 && strncasecmp(h.data(), "Bearer ", 7) == 0) {
            from_header = h.substr(7);
        } else {
            return errors::missing_token();
        }
    }
    auto from_query = request.query_param("access_token");
    if (from_header && from_query) {
        return errors::make(401, "M_MISSING_TOKEN",
                            "Send the access token either in the Authorization header or in the "
                            "query string, not both");
    }
    if (from_header) return from_header;
    return from_query;
}

std::optional<http::Response> ClientDispatcher::answer_without_route(
    const Router::Match& match, const http::Request& request) const {
    if (request.method == http::Method::kOptions) {
        // CORS preflight: never runs the endpoint and never needs a token.
        http::Response r;
        r.status = 204;
        r.content_type = {};
        return r;
    }
    if (match.route) return std::nullopt;
    if (!match.path_known) return http::error_response(errors::unrecognized());
    http::Response r = http::error_response(errors::method_not_allowed());
    r.headers.emplace_back("Allow", match.allow);
    return r;
}

std::optional<http::Response> ClientDispatcher::handle_now(http::Request& request) {
    auto match = router_.match(request.method, request.path);
    if (auto answered = answer_without_route(match, request)) return answered;
    const Route& route = *match.route;
    if (!route.sync) return std::nullopt;
    request.path_params = std::move(match.params);
    RequestContext ctx{request, nullptr};
    if (route.auth == AuthPolicy::kNone) return render(route.sync(ctx), nullptr);

    auto token = extract_token(request);
    if (!token) return http::error_response(token.error());
    if (!*token) return http::error_response(errors::missing_token());
    auto verdict = sessions_.authenticate_now(**token, route.auth == AuthPolicy::kAllowExpired);
    if (auto* err = std::get_if<Error>(&verdict)) return http::error_response(*err);
    auto* identity = std::get_if<service::Identity>(&verdict);
    if (!identity) return std::nullopt;  // needs storage: handle() takes over
    ctx.identity = identity;
    return render(route.sync(ctx), identity);
}

boost::asio::awaitable<http::Response> ClientDispatcher::handle(http::Request& request) {
    auto match = router_.match(request.method, request.path);
    if (auto answered = answer_without_route(match, request)) co_return std::move(*answered);
    const Route& route = *match.route;
    request.path_params = std::move(match.params);
    RequestContext ctx{request, nullptr};
    std::optional<service::Identity> identity;
    if (route.auth != AuthPolicy::kNone) {
        auto token = extract_token(request);
        if (!token) co_return http::error_response(token.error());
        if (!*token) co_return http::error_response(errors::missing_token());
        auto resolve_op =
            sessions_.authenticate(std::string(**token), route.auth == AuthPolicy::kAllowExpired);
        auto resolved = co_await std::move(resolve_op);
        if (!resolved) co_return http::error_response(resolved.error());
        identity = std::move(*resolved);
        ctx.identity = &*identity;
    }
    if (route.sync) co_return render(route.sync(ctx), ctx.identity);
    auto handler_op = route.async(ctx);
    auto result = co_await std::move(handler_op);
    co_return render(std::move(result), ctx.identity);
}

}  // namespace myelin::api
