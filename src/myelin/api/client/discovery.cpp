// Discovery: GET /_matrix/client/versions, GET /.well-known/matrix/client, GET /health.

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {
namespace {

// The newest spec version whose features we serve; v1.3 brought refresh tokens. The list
// announced is contiguous from v1.1 (js-sdk requires one of v1.1..v1.13).
constexpr int kNewestMinorVersion = 3;

std::string versions_body() {
    boost::json::array versions;
    for (int minor = 1; minor <= kNewestMinorVersion; ++minor) {
        versions.emplace_back("v1." + std::to_string(minor));
    }
    return boost::json::serialize(
        boost::json::object{{"versions", versions}, {"unstable_features", boost::json::object{}}});
}

}  // namespace

void add_discovery_routes(Router& router, Services& services) {
    // GET /_matrix/client/versions (spec: versions.yaml). No auth; never fails.
    router.add(Route{.method = http::Method::kGet,
                     .mount = Mount::kExact,
                     .path = "/_matrix/client/versions",
                     .sync = [body = versions_body()](RequestContext&) -> Result<http::Response> {
                         http::Response r;
                         r.body = body;
                         return r;
                     }});
    // GET /.well-known/matrix/client (spec: wellknown.yaml), from public_baseurl.
    std::string well_known = boost::json::serialize(boost::json::object{
        {"m.homeserver", boost::json::object{{"base_url", services.config.public_baseurl}}}});
    router.add(Route{.method = http::Method::kGet,
                     .mount = Mount::kExact,
                     .path = "/.well-known/matrix/client",
                     .sync = [well_known](RequestContext&) -> Result<http::Response> {
                         http::Response r;
                         r.body = well_known;
                         return r;
                     }});
    // GET /health: 200 for load balancers while the server serves.
    router.add(Route{.method = http::Method::kGet,
                     .mount = Mount::kExact,
                     .path = "/health",
                     .sync = [](RequestContext&) -> Result<http::Response> {
                         http::Response r;
                         r.body = R"({"status":"ok"})";
                         return r;
                     }});
}

}  // namespace myelin::api::client
