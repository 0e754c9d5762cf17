// Profiles (profile.yaml, the fields of v1.1–v1.15): GET /profile/{userId}, GET/PUT
// /profile/{userId}/{keyName} for keyName displayname and avatar_url. Only the owner may change
// a profile (403 M_FORBIDDEN). An empty string clears a field; null is refused (the spec lets
// servers refuse it). Custom fields (v1.16) are not supported: 403 on PUT, 404 on GET.

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/profile_service.hpp"

namespace myelin::api::client {
namespace {

using service::ProfileField;

bool is_known_field(std::string_view key) { return key == "displayname" || key == "avatar_url"; }

// keyName's grammar in profile.yaml: the two fields, m.tz, or a namespaced identifier.
bool is_valid_key_name(std::string_view key) {
    if (key.empty() || key.size() > 255) return false;
    for (char c : key) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

boost::json::object profile_json(const storage::ProfileRecord& p) {
    boost::json::object out;
    if (p.avatar_url) out["avatar_url"] = *p.avatar_url;
    if (p.displayname) out["displayname"] = *p.displayname;
    return out;
}

// GET /profile/{userId}: {"displayname"?, "avatar_url"?}. Errors: 404 M_NOT_FOUND, 503.
boost::asio::awaitable<Result<http::Response>> get_profile(Services& services,
                                                           RequestContext& ctx) {
    auto op = services.client_data.profiles.get(ctx.request.path_params.at(0));
    auto profile = co_await std::move(op);
    if (!profile) co_return profile.error();
    co_return http::json_response(profile_json(*profile));
}

// GET /profile/{userId}/{keyName}: {keyName: value}. Errors: 404 M_NOT_FOUND (no such user, or
// the field is unset or unknown), 503.
boost::asio::awaitable<Result<http::Response>> get_field(Services& services, RequestContext& ctx) {
    const std::string& key = ctx.request.path_params.at(1);
    auto op = services.client_data.profiles.get(ctx.request.path_params.at(0));
    auto profile = co_await std::move(op);
    if (!profile) co_return profile.error();
    auto all = profile_json(*profile);
    const auto* value = all.if_contains(key);
    if (value == nullptr) co_return errors::not_found("Profile field not set");
    co_return http::json_response(boost::json::object{{key, *value}});
}

// PUT /profile/{userId}/{keyName}: body {keyName: string}. 200 {}. Errors: 400 M_NOT_JSON /
// M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM (key name, avatar_url not an mxc:// URI) /
// M_TOO_LARGE (over the length limit), 403 M_FORBIDDEN (another user's profile, a custom
// field), 503.
boost::asio::awaitable<Result<http::Response>> put_field(Services& services, RequestContext& ctx) {
    const std::string& user_id = ctx.request.path_params.at(0);
    const std::string& key = ctx.request.path_params.at(1);
    if (auto own = require_own_user(ctx, user_id); !own) co_return own.error();
    if (!is_valid_key_name(key)) co_return errors::invalid_param("Invalid profile key");
    if (!is_known_field(key)) {
        co_return errors::forbidden("Only displayname and avatar_url can be set here");
    }
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto value = json::optional_string(*body, key);
    if (!value) co_return value.error();
    if (!*value) co_return errors::missing_param("Missing '" + key + "'");
    const bool is_name = key == "displayname";
    const std::size_t limit = service::kMaxAvatarUrlBytes;
    if (is_name && (*value)->size() > service::kMaxDisplayNameBytes) {
        co_return errors::make(400, "M_TOO_LARGE", "Display name too long");
    }
    if (!is_name && (*value)->size() > limit) {
        co_return errors::make(400, "M_TOO_LARGE", "Avatar URL too long");
    }
    if (!is_name && !(*value)->empty() && (*value)->rfind("mxc://", 0) != 0) {
        co_return errors::invalid_param("avatar_url must be an mxc:// URI");
    }
    std::optional<std::string> stored;
    if (!(*value)->empty()) stored = std::move(**value);
    ProfileField field = ProfileField::kAvatarUrl;
    if (is_name) field = ProfileField::kDisplayName;
    auto op = services.client_data.profiles.set(user_id, field, std::move(stored));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_profile_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/profile/{userId}", get_profile);
    routes.add(http::Method::kGet, "/profile/{userId}/{keyName}", get_field);
    routes.add(http::Method::kPut, "/profile/{userId}/{keyName}", put_field);
}

}  // namespace myelin::api::client
