// Presence (presence.yaml; service/presence_service.hpp): PUT /presence/{userId}/status
// {presence: online|unavailable|offline, status_msg?} only for oneself (403 M_FORBIDDEN), and
// GET /presence/{userId}/status for oneself or a user sharing a joined room (403 M_FORBIDDEN
// otherwise; 404 M_NOT_FOUND for a user this server does not have). Presence lives in this
// process's memory only.

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

// PUT: 200 {}. Errors: 400 M_NOT_JSON / M_BAD_JSON (presence missing or not a string,
// status_msg not a string) / M_INVALID_PARAM (unknown state, status_msg too long), 403.
Result<http::Response> put_status(Services& services, RequestContext& ctx) {
    const std::string& user_id = ctx.request.path_params.at(0);
    if (auto own = require_own_user(ctx, user_id); !own) return own.error();
    auto body = json::parse_object(ctx.request.body);
    if (!body) return body.error();
    auto presence = json::required_string(*body, "presence");
    if (!presence) return presence.error();
    auto status_msg = json::optional_string(*body, "status_msg");
    if (!status_msg) return status_msg.error();
    auto set = services.client_data.presence.set(user_id, *presence, std::move(*status_msg));
    if (!set) return set.error();
    return http::json_response(boost::json::object{});
}

// GET: 200 {presence, last_active_ago?, status_msg?, currently_active}. Errors: 403, 404, 503.
boost::asio::awaitable<Result<http::Response>> get_status(Services& services, RequestContext& ctx) {
    auto op = services.client_data.presence.view_for(std::string(ctx.identity->user_id()),
                                                     ctx.request.path_params.at(0));
    auto view = co_await std::move(op);
    if (!view) co_return view.error();
    boost::json::object out;
    out["presence"] = view->presence;
    if (view->last_active_ago) out["last_active_ago"] = *view->last_active_ago;
    if (view->status_msg) out["status_msg"] = *view->status_msg;
    out["currently_active"] = view->currently_active;
    co_return http::json_response(out);
}

}  // namespace

void add_presence_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPut, "/presence/{userId}/status",
               [&services](RequestContext& ctx) { return put_status(services, ctx); });
    routes.add(http::Method::kGet, "/presence/{userId}/status", get_status);
}

}  // namespace myelin::api::client
