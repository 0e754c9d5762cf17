// Endpoints that clients call at start-up and that this server answers honestly empty for now:
// GET /voip/turnServer (voip.yaml; no TURN server
// is configured, so the answer is Synapse's {}: js-sdk then builds no ICE server, while a
// schema-shaped answer with `uris: []` would give it an empty one; a known deviation from the
// 200 schema) and GET /thirdparty/protocols (third_party_lookup.yaml; no bridges: {}).

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {
namespace {

// 200 {}.
Result<http::Response> empty_object(RequestContext&) {
    return http::json_response(boost::json::object{});
}

}  // namespace

void add_empty_answer_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/voip/turnServer", empty_object);
    routes.add(http::Method::kGet, "/thirdparty/protocols", empty_object);
}

}  // namespace myelin::api::client
