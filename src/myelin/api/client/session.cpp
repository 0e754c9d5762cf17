// Sign-in endpoints: GET/POST /login, POST /register, GET /register/available
// (spec: login.yaml, registration.yaml). Every route answers under /v3 and /r0.

#include <boost/json.hpp>

#include "myelin/api/client/request_bodies.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/api/client/tokens_json.hpp"

namespace myelin::api::client {
namespace {

// POST /login (m.login.password). Errors: 400 M_NOT_JSON/M_BAD_JSON/M_MISSING_PARAM/
// M_INVALID_PARAM/M_UNKNOWN (login type), 403 M_FORBIDDEN/M_USER_DEACTIVATED, 503.
boost::asio::awaitable<Result<http::Response>> post_login(Services& services, RequestContext& ctx) {
    auto request = decode_login(ctx.request.body);
    if (!request) co_return request.error();

    auto op = services.accounts.login(std::move(*request));
    auto tokens = co_await std::move(op);
    if (!tokens) co_return tokens.error();
    boost::json::object out;
    out["user_id"] = tokens->user_id;
    put_tokens(out, *tokens, true);
    out["well_known"] = boost::json::object{
        {"m.homeserver", boost::json::object{{"base_url", services.config.public_baseurl}}}};
    co_return http::json_response(out);
}

// POST /register. Errors: 400 M_USER_IN_USE/M_INVALID_USERNAME/M_INVALID_PARAM/M_BAD_JSON,
// 401 UIA, 403 M_FORBIDDEN (registration or guests off), 503.
boost::asio::awaitable<Result<http::Response>> post_register(Services& services,
                                                             RequestContext& ctx) {
    auto request = decode_register(ctx.request.query_param("kind"), ctx.request.body);
    if (!request) co_return request.error();

    auto op = services.accounts.register_account(std::move(*request));
    auto result = co_await std::move(op);
    if (!result) co_return result.error();
    boost::json::object out;
    out["user_id"] = result->user_id;
    if (result->tokens) put_tokens(out, *result->tokens, true);
    co_return http::json_response(out);
}

// GET /register/available?username=. Errors: 400 M_MISSING_PARAM/M_USER_IN_USE/
// M_INVALID_USERNAME, 503.
boost::asio::awaitable<Result<http::Response>> get_available(Services& services,
                                                             RequestContext& ctx) {
    auto username = ctx.request.query_param("username");
    if (!username) co_return errors::missing_param("Missing 'username'");
    auto op = services.accounts.check_available(std::string(*username));
    auto available = co_await std::move(op);
    if (!available) co_return available.error();
    co_return http::json_response(boost::json::object{{"available", true}});
}

}  // namespace

void add_session_routes(Router& router, Services& services) {
    // GET /login: the login types offered.
    router.add(Route{.method = http::Method::kGet,
                     .path = "/login",
                     .rate_class = RateClass::kLogin,
                     .sync = [](RequestContext&) -> Result<http::Response> {
                         http::Response r;
                         r.body = R"({"flows":[{"type":"m.login.password"}]})";
                         return r;
                     }});
    router.add(
        Route{.method = http::Method::kPost,
              .path = "/login",
              .rate_class = RateClass::kLogin,
              .async = [&services](RequestContext& ctx) { return post_login(services, ctx); }});
    router.add(
        Route{.method = http::Method::kPost,
              .path = "/register",
              .rate_class = RateClass::kRegister,
              .async = [&services](RequestContext& ctx) { return post_register(services, ctx); }});
    router.add(
        Route{.method = http::Method::kGet,
              .path = "/register/available",
              .rate_class = RateClass::kRegister,
              .async = [&services](RequestContext& ctx) { return get_available(services, ctx); }});
}

}  // namespace myelin::api::client
