// Endpoints that clients call at start-up and that this server answers honestly empty for now:
// GET /joined_rooms (list_joined_rooms.yaml; rooms arrive with issue #8 §2, which replaces the
// empty list with the caller's joined rooms), GET /voip/turnServer (voip.yaml; no TURN server
// is configured, so the answer is Synapse's {}: js-sdk then builds no ICE server, while a
// schema-shaped answer with `uris: []` would give it an empty one; a known deviation from the
// 200 schema) and GET /thirdparty/protocols (third_party_lookup.yaml; no bridges: {}).

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {

void add_empty_answer_routes(Router& router, Services&) {
    router.add(Route{
        .method = http::Method::kGet,
        .path = "/joined_rooms",
        .auth = AuthPolicy::kRequired,
        .rate_class = RateClass::kAuthenticated,
        .sync = [](RequestContext&) -> Result<http::Response> {
            // Hook for rooms (issue #8 §2): the caller's joined room IDs go here.
            return http::json_response(boost::json::object{{"joined_rooms", boost::json::array{}}});
        }});
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
