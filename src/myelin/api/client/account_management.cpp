// Account management: POST /account/password (password_management.yaml), POST
// /account/deactivate (account_deactivation.yaml), GET /capabilities (capabilities.yaml) and
// GET /v1/register/m.login.registration_token/validity (registration_tokens.yaml). The first
// two are protected by User-Interactive Authentication through the shared UiaEngine.

#include <boost/json.hpp>

#include "myelin/api/client/request_bodies.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/service/uia.hpp"

namespace myelin::api::client {
namespace {

Error guest_forbidden() {
    return errors::make(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest accounts cannot do this");
}

// The UIA challenge of an account endpoint: the signed-in user proves their password.
service::UiaChallenge password_challenge(std::string endpoint, const service::Identity& id) {
    service::UiaChallenge challenge;
    challenge.endpoint = std::move(endpoint);
    challenge.user_id = id.user_id();
    challenge.flows = {{std::string(service::kStagePassword)}};
    return challenge;
}

// POST /account/password (spec §13.3). Body: new_password (required), logout_devices (default
// true), auth. The body is checked before UIA, so a bad request costs no session. With
// logout_devices every other session ends and its device is deleted; the caller's token stays
// valid. Errors: 400 M_NOT_JSON/M_BAD_JSON/M_MISSING_PARAM/M_INVALID_PARAM (over-long
// password), 401 UIA (M_FORBIDDEN after a wrong password), 403 M_FORBIDDEN (session of another
// endpoint or user) / M_GUEST_ACCESS_FORBIDDEN, 429, 503.
boost::asio::awaitable<Result<http::Response>> post_password(Services& services,
                                                             RequestContext& ctx) {
    const auto& id = *ctx.identity;
    if (id.is_guest()) co_return guest_forbidden();
    auto body = decode_password_change(ctx.request.body, services.config.passwords.max_length);
    if (!body) co_return body.error();

    auto uia_op = services.uia.authenticate(body->auth ? &*body->auth : nullptr,
                                            password_challenge("POST /account/password", id));
    auto completed = co_await std::move(uia_op);
    if (!completed) co_return completed.error();

    auto op = services.accounts.change_password(id.user_id(), std::move(body->new_password),
                                                body->logout_devices, id.session->session_id);
    auto changed = co_await std::move(op);
    if (!changed) co_return changed.error();
    co_return http::json_response(boost::json::object{});
}

// POST /account/deactivate (spec §13.4). Body: auth, id_server (no 3PIDs are bound here, so
// there is nothing to unbind), erase. The account can never sign in again, all its sessions
// end and its devices go; its user ID stays taken. Errors: as POST /account/password.
boost::asio::awaitable<Result<http::Response>> post_deactivate(Services& services,
                                                               RequestContext& ctx) {
    const auto& id = *ctx.identity;
    if (id.is_guest()) co_return guest_forbidden();
    auto body = decode_deactivate(ctx.request.body);
    if (!body) co_return body.error();

    auto uia_op = services.uia.authenticate(body->auth ? &*body->auth : nullptr,
                                            password_challenge("POST /account/deactivate", id));
    auto completed = co_await std::move(uia_op);
    if (!completed) co_return completed.error();

    auto op = services.accounts.deactivate(id.user_id());
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    // "success" is required when there was nothing to unbind (no 3PIDs on this server).
    co_return http::json_response(boost::json::object{{"id_server_unbind_result", "success"}});
}

// GET /capabilities (spec §14.3): what this server lets the user change, stated honestly.
// Rooms arrive later, but clients read m.room_versions (absent means "1" only), so it is sent.
http::Response capabilities_response() {
    auto enabled = [](bool on) { return boost::json::object{{"enabled", on}}; };
    boost::json::object caps;
    caps["m.change_password"] = enabled(true);
    caps["m.room_versions"] = boost::json::object{
        {"default", "10"}, {"available", boost::json::object{{"10", "stable"}, {"11", "stable"}}}};
    // PUT /profile/{userId}/displayname and /avatar_url (api/client/profile.cpp).
    caps["m.set_displayname"] = enabled(true);
    caps["m.set_avatar_url"] = enabled(true);
    caps["m.3pid_changes"] = enabled(false);
    caps["m.get_login_token"] = enabled(false);
    return http::json_response(boost::json::object{{"capabilities", std::move(caps)}});
}

// GET /_matrix/client/v1/register/m.login.registration_token/validity?token= (spec §10.3): a
// snapshot; rate limited per IP (brute-force guessing). Errors: 400 M_MISSING_PARAM, 403
// M_FORBIDDEN when registration is disabled, 429, 503.
boost::asio::awaitable<Result<http::Response>> get_token_validity(Services& services,
                                                                  RequestContext& ctx) {
    if (!services.config.registration.enabled) {
        co_return errors::forbidden("Registration is disabled");
    }
    auto token = ctx.request.query_param("token");
    if (!token) co_return errors::missing_param("Missing 'token'");
    auto op = services.registration_tokens.validate(std::string(*token));
    auto valid = co_await std::move(op);
    if (!valid) co_return valid.error();
    co_return http::json_response(boost::json::object{{"valid", *valid}});
}

}  // namespace

void add_account_management_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPost, "/account/password", post_password);
    routes.add(http::Method::kPost, "/account/deactivate", post_deactivate);
    routes.add(http::Method::kGet, "/capabilities",
               [](RequestContext&) -> Result<http::Response> { return capabilities_response(); });
    router.add(Route{
        .method = http::Method::kGet,
        .mount = Mount::kClientV1,
        .path = "/register/m.login.registration_token/validity",
        .rate_class = RateClass::kTokenValidity,
        .async = [&services](RequestContext& ctx) { return get_token_validity(services, ctx); }});
}

}  // namespace myelin::api::client
