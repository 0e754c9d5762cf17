// Third-party identifiers (administrative_contact.yaml). This server supports none: it sends no
// email or SMS and talks to no identity server, and GET /capabilities says
// m.3pid_changes: false. So:
//   - GET /account/3pid: 200 {"threepids": []}, the honest list (an account never has one);
//   - POST /account/3pid/email/requestToken, /account/3pid/msisdn/requestToken: 400
//     M_THREEPID_MEDIUM_NOT_SUPPORTED, the spec's code for "the homeserver does not support
//     adding email addresses" (or phone numbers), which clients translate;
//   - POST /account/3pid/add, /account/3pid/delete and the deprecated POST /account/3pid: 400
//     M_FORBIDDEN "Third-party identifier changes are disabled on this server", as Synapse with
//     enable_3pid_changes off answers (the spec lists no error for them; clients are told by
//     the capability not to call them);
//   - POST /account/3pid/bind and /unbind (identity-server bindings) stay unrouted: 404
//     M_UNRECOGNIZED, as every endpoint the server does not implement.
// Every route needs an access token (401 first).

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {
namespace {

Result<http::Response> list_threepids(RequestContext&) {
    boost::json::object out;
    out["threepids"] = boost::json::array{};
    return http::json_response(out);
}

Result<http::Response> medium_not_supported(RequestContext&) {
    return errors::make(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED",
                        "This server does not support third-party identifiers");
}

Result<http::Response> changes_disabled(RequestContext&) {
    return errors::make(400, "M_FORBIDDEN",
                        "Third-party identifier changes are disabled on this server");
}

}  // namespace

void add_threepid_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/account/3pid", list_threepids);
    routes.add(http::Method::kPost, "/account/3pid", changes_disabled);
    routes.add(http::Method::kPost, "/account/3pid/add", changes_disabled);
    routes.add(http::Method::kPost, "/account/3pid/delete", changes_disabled);
    routes.add(http::Method::kPost, "/account/3pid/email/requestToken", medium_not_supported);
    routes.add(http::Method::kPost, "/account/3pid/msisdn/requestToken", medium_not_supported);
}

}  // namespace myelin::api::client
