// Endpoints that clients call at start-up and that this server answers honestly empty for now:
// GET /voip/turnServer (voip.yaml; no TURN server
// is configured, so the answer is Synapse's {}: js-sdk then builds no ICE server, while a
// schema-shaped answer with `uris: []` would give it an empty one; a known deviation from the
// 200 schema) and GET /thirdparty/protocols (third_party_lookup.yaml; no bridges: {}).

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {

void add_empty_answer_routes(Router& router, Services&) {
    router.add(Route{.method = http::Method::kGet,
                     .path = "/voip/turnServer",
                     .auth = AuthPolicy::kRequired,
                     .rate_class = RateClass::kAuthenticated,
                     .sync = [](RequestContext&) -> Result<http::Response> {
                         return http::json_response(boost::json::object{});
                     }});
    router.add(Route{.method = http::Method::kGet,
                     .path = "/thirdparty/protocols",
                     .auth = AuthPolicy::kRequired,
                     .rate_class = RateClass::kAuthenticated,
                     .sync = [](RequestContext&) -> Result<http::Response> {
                         return http::json_response(boost::json::object{});
                     }});
}

}  // namespace myelin::api::client
