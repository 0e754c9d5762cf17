// The admin HTTP API (see routes.hpp). Every route first proves that the caller is an admin
// (admin_only: a storage read of the caller's account, since the flag can be granted or
// withdrawn at any time); the handlers then call the same services as the `myelin admin` CLI.

#include "myelin/api/admin/routes.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include <boost/json.hpp>

#include "myelin/api/admin/admin_json.hpp"
#include "myelin/core/log.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/user_ids.hpp"

namespace myelin::api::admin {
namespace {

namespace bj = boost::json;
using Reply = boost::asio::awaitable<Result<http::Response>>;

constexpr int kDefaultEventLimit = 50;

// 403 unless the caller's account has the admin flag and is active.
boost::asio::awaitable<Result<void>> require_admin(service::AdminService& admin,
                                                   const service::Identity& caller) {
    if (caller.is_guest()) co_return errors::forbidden("You are not a server admin");
    auto op = admin.user(caller.user_id());
    auto user = co_await std::move(op);
    if (!user) {
        if (user.error().status == 404) co_return errors::forbidden("You are not a server admin");
        co_return user.error();
    }
    if (!user->is_admin || user->deactivated) {
        co_return errors::forbidden("You are not a server admin");
    }
    co_return Result<void>{};
}

// The {userId} of the path as a full user ID of this server (a bare localpart is accepted).
Result<std::string> target_user(const Services& services, const RequestContext& ctx) {
    const std::string& raw = ctx.request.path_params.at(0);
    auto id = service::user_id_for_login(raw, services.config.server_name);
    if (!id) return errors::invalid_param("'" + raw + "' is not a user ID of this server");
    return std::move(*id);
}

// The integer at `key`, nullopt when absent or null; M_BAD_JSON for another type.
Result<std::optional<std::int64_t>> optional_int(const bj::object& obj, std::string_view key) {
    const bj::value* v = obj.if_contains(key);
    if (!v || v->is_null()) return std::optional<std::int64_t>();
    if (v->is_int64()) return std::optional<std::int64_t>(v->as_int64());
    if (v->is_uint64() &&
        v->as_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return std::optional<std::int64_t>(static_cast<std::int64_t>(v->as_uint64()));
    }
    return errors::bad_json("'" + std::string(key) + "' must be an integer");
}

// GET users/{userId}
Reply get_user(Services& services, service::AdminService& admin, RequestContext& ctx) {
    auto user_id = target_user(services, ctx);
    if (!user_id) co_return user_id.error();
    auto op = admin.user(*user_id);
    auto user = co_await std::move(op);
    if (!user) co_return user.error();
    co_return http::json_response(user_json(*user));
}

// PUT users/{userId} {"password"?, "admin"?}: creates the account (no device, no session).
// Errors: 400 M_INVALID_USERNAME / M_USER_IN_USE / M_INVALID_PARAM (another server, over-long
// password), 403, 503.
Reply put_user(Services& services, service::AdminService& admin, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto password = json::optional_string(*body, "password");
    if (!password) co_return password.error();
    auto make_admin = json::optional_bool(*body, "admin");
    if (!make_admin) co_return make_admin.error();
    std::string localpart = ctx.request.path_params.at(0);
    const std::string suffix = ":" + services.config.server_name;
    if (localpart.starts_with('@')) {
        if (!localpart.ends_with(suffix) || localpart.size() <= suffix.size() + 1) {
            co_return errors::invalid_param("'" + localpart + "' is not a user ID of this server");
        }
        localpart = localpart.substr(1, localpart.size() - 1 - suffix.size());
    }
    const bool as_admin = make_admin->value_or(false);
    auto op = services.accounts.create_user(std::move(localpart), std::move(*password), as_admin);
    auto created = co_await std::move(op);
    if (!created) co_return created.error();
    log::app()->info("admin {} created {}{}", ctx.identity->user_id(), *created,
                     as_admin ? " (admin)" : "");
    auto read_op = admin.user(*created);
    auto user = co_await std::move(read_op);
    if (!user) co_return user.error();
    co_return http::json_response(user_json(*user), 201);
}

// POST users/{userId}/reset_password {"new_password"}: ends every session of the user.
Reply post_reset_password(Services& services, service::AdminService& /*admin*/,
                          RequestContext& ctx) {
    auto user_id = target_user(services, ctx);
    if (!user_id) co_return user_id.error();
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto password = json::required_string(*body, "new_password");
    if (!password) co_return password.error();
    auto op = services.accounts.reset_password(*user_id, std::move(*password));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    log::app()->info("admin {} reset the password of {}", ctx.identity->user_id(), *user_id);
    co_return http::json_response(bj::object{});
}

// POST users/{userId}/deactivate: for good; ends every session and deletes the devices.
Reply post_deactivate(Services& services, service::AdminService& /*admin*/, RequestContext& ctx) {
    auto user_id = target_user(services, ctx);
    if (!user_id) co_return user_id.error();
    auto op = services.accounts.deactivate(*user_id);
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    log::app()->info("admin {} deactivated {}", ctx.identity->user_id(), *user_id);
    co_return http::json_response(bj::object{});
}

// GET users/{userId}/devices
Reply get_devices(Services& services, service::AdminService& admin, RequestContext& ctx) {
    auto user_id = target_user(services, ctx);
    if (!user_id) co_return user_id.error();
    auto op = admin.devices(*user_id);
    auto devices = co_await std::move(op);
    if (!devices) co_return devices.error();
    bj::array list;
    for (const auto& d : *devices) list.push_back(device_json(d));
    co_return http::json_response(bj::object{{"devices", std::move(list)}});
}

// POST users/{userId}/revoke {"device_id"?}: ends the sessions (of one device), keeps the
// devices. Answers {"sessions_revoked": N}.
Reply post_revoke(Services& services, service::AdminService& admin, RequestContext& ctx) {
    auto user_id = target_user(services, ctx);
    if (!user_id) co_return user_id.error();
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto device_id = json::optional_string(*body, "device_id");
    if (!device_id) co_return device_id.error();
    auto op = admin.revoke(*user_id, *device_id);
    auto ended = co_await std::move(op);
    if (!ended) co_return ended.error();
    log::app()->info("admin {} revoked {} session(s) of {}{}{}", ctx.identity->user_id(), *ended,
                     *user_id, *device_id ? " on device " : "", device_id->value_or(""));
    co_return http::json_response(bj::object{{"sessions_revoked", *ended}});
}

// GET users/{userId}/security_events?limit=N
Reply get_security_events(Services& services, service::AdminService& admin, RequestContext& ctx) {
    auto user_id = target_user(services, ctx);
    if (!user_id) co_return user_id.error();
    int limit = kDefaultEventLimit;
    if (auto param = ctx.request.query_param("limit")) {
        int parsed = 0;
        try {
            std::size_t used = 0;
            parsed = std::stoi(std::string(*param), &used);
            if (used != param->size()) parsed = 0;
        } catch (const std::exception&) {
            parsed = 0;
        }
        if (parsed < 1 || parsed > service::AdminService::kMaxEvents) {
            co_return errors::invalid_param("'limit' must be an integer from 1 to " +
                                            std::to_string(service::AdminService::kMaxEvents));
        }
        limit = parsed;
    }
    auto op = admin.security_events(*user_id, limit);
    auto events = co_await std::move(op);
    if (!events) co_return events.error();
    bj::array list;
    for (const auto& e : *events) list.push_back(security_event_json(e));
    co_return http::json_response(bj::object{{"events", std::move(list)}});
}

// GET registration_tokens
Reply get_tokens(Services& services, service::AdminService& /*admin*/, RequestContext& /*ctx*/) {
    auto op = services.registration_tokens.list();
    auto tokens = co_await std::move(op);
    if (!tokens) co_return tokens.error();
    bj::array list;
    for (const auto& t : *tokens) list.push_back(registration_token_json(t));
    co_return http::json_response(bj::object{{"registration_tokens", std::move(list)}});
}

// POST registration_tokens {"token"?, "uses_allowed"?, "expiry_time"? (ms since the epoch)}
Reply post_token(Services& services, service::AdminService& /*admin*/, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto token = json::optional_string(*body, "token");
    if (!token) co_return token.error();
    auto uses = optional_int(*body, "uses_allowed");
    if (!uses) co_return uses.error();
    auto expiry = optional_int(*body, "expiry_time");
    if (!expiry) co_return expiry.error();
    auto op = services.registration_tokens.create(std::move(*token), *uses, expiry->value_or(0));
    auto created = co_await std::move(op);
    if (!created) co_return created.error();
    log::app()->info("admin {} created a registration token", ctx.identity->user_id());
    co_return http::json_response(registration_token_json(*created));
}

// DELETE registration_tokens/{token}: 404 M_NOT_FOUND when there is none.
Reply delete_token(Services& services, service::AdminService& /*admin*/, RequestContext& ctx) {
    auto op = services.registration_tokens.remove(ctx.request.path_params.at(0));
    auto removed = co_await std::move(op);
    if (!removed) co_return removed.error();
    if (!*removed) co_return errors::not_found("No such registration token");
    log::app()->info("admin {} deleted a registration token", ctx.identity->user_id());
    co_return http::json_response(bj::object{});
}

using Handler = Reply (*)(Services&, service::AdminService&, RequestContext&);

// Runs `handler` only once the caller is proven an admin: the one place every admin route
// checks the flag.
Reply admin_only(Handler handler, Services& services, service::AdminService& admin,
                 RequestContext& ctx) {
    auto check_op = require_admin(admin, *ctx.identity);
    auto allowed = co_await std::move(check_op);
    if (!allowed) co_return allowed.error();
    auto handler_op = handler(services, admin, ctx);
    co_return co_await std::move(handler_op);
}

void add(Router& router, Services& services, service::AdminService& admin, http::Method method,
         std::string_view path, Handler handler) {
    router.add(Route{.method = method,
                     .mount = Mount::kExact,
                     .path = std::string(kPrefix) + std::string(path),
                     .auth = AuthPolicy::kRequired,
                     .rate_class = RateClass::kAuthenticated,
                     .async = [&services, &admin, handler](RequestContext& ctx) {
                         return admin_only(handler, services, admin, ctx);
                     }});
}

}  // namespace

void add_admin_routes(Router& router, Services& services, service::AdminService& admin) {
    using M = http::Method;
    add(router, services, admin, M::kGet, "/users/{userId}", get_user);
    add(router, services, admin, M::kPut, "/users/{userId}", put_user);
    add(router, services, admin, M::kPost, "/users/{userId}/reset_password", post_reset_password);
    add(router, services, admin, M::kPost, "/users/{userId}/deactivate", post_deactivate);
    add(router, services, admin, M::kGet, "/users/{userId}/devices", get_devices);
    add(router, services, admin, M::kPost, "/users/{userId}/revoke", post_revoke);
    add(router, services, admin, M::kGet, "/users/{userId}/security_events", get_security_events);
    add(router, services, admin, M::kGet, "/registration_tokens", get_tokens);
    add(router, services, admin, M::kPost, "/registration_tokens", post_token);
    add(router, services, admin, M::kDelete, "/registration_tokens/{token}", delete_token);
}

}  // namespace myelin::api::admin
