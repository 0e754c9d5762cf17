// Session endpoints for a signed-in client: GET /account/whoami (whoami.yaml), POST /logout and
// POST /logout/all (logout.yaml). Every route answers under /v3 and /r0.

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/write.hpp"

namespace myelin::api::client {

void add_account_routes(Router& router, Services& services) {
    // GET /account/whoami: user_id, device_id, is_guest. Errors: 401 M_MISSING_TOKEN /
    // M_UNKNOWN_TOKEN (soft_logout when expired). Answered from the token cache.
    router.add(Route{.method = http::Method::kGet,
                     .path = "/account/whoami",
                     .auth = AuthPolicy::kRequired,
                     .rate_class = RateClass::kAuthenticated,
                     .sync = [](RequestContext& ctx) -> Result<http::Response> {
                         // Written directly: this is the hottest authenticated endpoint.
                         const auto& id = *ctx.identity;
                         http::Response r;
                         r.body.reserve(48 + id.user_id().size() + id.device_id().size());
                         r.body += "{\"user_id\":";
                         json::append_string(r.body, id.user_id());
                         r.body += ",\"device_id\":";
                         json::append_string(r.body, id.device_id());
                         r.body += id.is_guest() ? ",\"is_guest\":true}" : ",\"is_guest\":false}";
                         return r;
                     }});
    // POST /logout: ends this session and deletes its device. An expired token may log out.
    router.add(Route{.method = http::Method::kPost,
                     .path = "/logout",
                     .auth = AuthPolicy::kAllowExpired,
                     .rate_class = RateClass::kAuthenticated,
                     .async = [&services](RequestContext& ctx)
                         -> boost::asio::awaitable<Result<http::Response>> {
                         auto op = services.sessions.logout(*ctx.identity);
                         auto r = co_await std::move(op);
                         if (!r) co_return r.error();
                         co_return http::json_response(boost::json::object{});
                     }});
    // POST /logout/all: ends every session of the user and deletes all their devices.
    router.add(Route{.method = http::Method::kPost,
                     .path = "/logout/all",
                     .auth = AuthPolicy::kAllowExpired,
                     .rate_class = RateClass::kAuthenticated,
                     .async = [&services](RequestContext& ctx)
                         -> boost::asio::awaitable<Result<http::Response>> {
                         auto op = services.sessions.logout_all(ctx.identity->user_id());
                         auto r = co_await std::move(op);
                         if (!r) co_return r.error();
                         co_return http::json_response(boost::json::object{});
                     }});
}

}  // namespace myelin::api::client
