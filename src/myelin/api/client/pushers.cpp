// Pushers (pusher.yaml). This server sends no push notifications yet (no HTTP push gateway
// client, no email), so it keeps no pusher:
//   - GET /pushers: 200 {"pushers": []}, the honest list;
//   - POST /pushers/set with `kind: null` (delete the pusher of app_id + pushkey): 200 {}, since
//     there is none (Synapse also answers 200 for a pusher it does not have);
//   - POST /pushers/set creating a pusher (`kind` "http", "email", …): 400 M_UNRECOGNIZED. The
//     only honest answer is an error: a stored pusher that never fires would tell the client
//     its notifications work. 400 is the status the spec gives this endpoint's refusals; the
//     errcode is the one the server answers every unsupported feature with.
// The body is checked first as the spec requires it (400 M_NOT_JSON / M_BAD_JSON /
// M_MISSING_PARAM for `kind`, `app_id`, `pushkey`).

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

Result<http::Response> list_pushers(RequestContext&) {
    boost::json::object out;
    out["pushers"] = boost::json::array{};
    return http::json_response(out);
}

Result<http::Response> set_pusher(RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) return body.error();
    const auto* kind = body->if_contains("kind");
    if (kind == nullptr) return errors::missing_param("kind is required");
    if (!kind->is_null() && !kind->is_string()) {
        return errors::bad_json("kind must be a string or null");
    }
    for (const char* key : {"app_id", "pushkey"}) {
        auto value = json::required_string(*body, key);
        if (!value) return value.error();
    }
    if (kind->is_null()) return http::json_response(boost::json::object{});
    return errors::make(400, "M_UNRECOGNIZED",
                        "This server sends no push notifications: pushers are not supported");
}

}  // namespace

void add_pusher_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/pushers", list_pushers);
    routes.add(http::Method::kPost, "/pushers/set", set_pusher);
}

}  // namespace myelin::api::client
