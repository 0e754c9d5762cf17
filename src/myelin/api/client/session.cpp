// Sign-in endpoints: GET/POST /login, POST /register, GET /register/available
// (spec: login.yaml, registration.yaml). Every route answers under /v3 and /r0.

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/api/client/tokens_json.hpp"
#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

constexpr std::size_t kMaxDeviceIdBytes = 255;

Result<std::optional<std::string>> optional_device_id(const boost::json::object& body) {
    auto id = json::optional_string(body, "device_id");
    if (!id) return id.error();
    if (*id && ((*id)->empty() || (*id)->size() > kMaxDeviceIdBytes)) {
        return errors::invalid_param("'device_id' must be 1 to 255 bytes");
    }
    return id;
}

// The user named by a login body: identifier {type: m.id.user, user} or the legacy `user`.
Result<std::string> login_user(const boost::json::object& body) {
    auto identifier = json::optional_object(body, "identifier");
    if (!identifier) return identifier.error();
    if (*identifier) {
        auto type = json::required_string(**identifier, "type");
        if (!type) return type.error();
        if (*type == "m.id.user") return json::required_string(**identifier, "user");
        if (*type == "m.id.thirdparty" || *type == "m.id.phone") {
            // No third-party identifiers are bound on this server.
            return errors::forbidden("Invalid username or password");
        }
        return errors::make(400, "M_UNKNOWN", "Unknown identifier type");
    }
    auto user = json::optional_string(body, "user");
    if (!user) return user.error();
    if (!*user) return errors::missing_param("Missing 'identifier'");
    return std::move(**user);
}

// POST /login (m.login.password). Errors: 400 M_NOT_JSON/M_BAD_JSON/M_MISSING_PARAM/
// M_INVALID_PARAM/M_UNKNOWN (login type), 403 M_FORBIDDEN/M_USER_DEACTIVATED, 503.
boost::asio::awaitable<Result<http::Response>> post_login(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto type = json::required_string(*body, "type");
    if (!type) co_return type.error();
    if (*type != "m.login.password") {
        co_return errors::make(400, "M_UNKNOWN", "Bad login type");
    }
    service::LoginRequest request;
    auto user = login_user(*body);
    if (!user) co_return user.error();
    request.user = std::move(*user);
    auto password = json::required_string(*body, "password");
    if (!password) co_return password.error();
    request.password = std::move(*password);
    auto device_id = optional_device_id(*body);
    if (!device_id) co_return device_id.error();
    request.device_id = std::move(*device_id);
    auto display_name = json::optional_string(*body, "initial_device_display_name");
    if (!display_name) co_return display_name.error();
    request.initial_device_display_name = std::move(*display_name);
    auto refresh = json::optional_bool(*body, "refresh_token");
    if (!refresh) co_return refresh.error();
    request.refresh_token = refresh->value_or(false);

    auto op = services.accounts.login(std::move(request));
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
    service::RegistrationRequest request;
    auto kind = ctx.request.query_param("kind");
    if (kind && *kind != "user" && *kind != "guest") {
        co_return errors::invalid_param("'kind' must be 'user' or 'guest'");
    }
    request.guest = kind && *kind == "guest";
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto display_name = json::optional_string(*body, "initial_device_display_name");
    if (!display_name) co_return display_name.error();
    request.initial_device_display_name = std::move(*display_name);
    if (!request.guest) {
        auto username = json::optional_string(*body, "username");
        if (!username) co_return username.error();
        request.username = std::move(*username);
        auto password = json::optional_string(*body, "password");
        if (!password) co_return password.error();
        request.password = std::move(*password);
        auto device_id = optional_device_id(*body);
        if (!device_id) co_return device_id.error();
        request.device_id = std::move(*device_id);
        auto inhibit = json::optional_bool(*body, "inhibit_login");
        if (!inhibit) co_return inhibit.error();
        request.inhibit_login = inhibit->value_or(false);
        auto refresh = json::optional_bool(*body, "refresh_token");
        if (!refresh) co_return refresh.error();
        request.refresh_token = refresh->value_or(false);
        auto auth = json::optional_object(*body, "auth");
        if (!auth) co_return auth.error();
        if (*auth) request.auth = **auth;
    }

    auto op = services.accounts.register_account(std::move(request));
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
