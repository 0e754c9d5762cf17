// Account data (account-data.yaml): GET/PUT /user/{userId}/account_data/{type} and
// /user/{userId}/rooms/{roomId}/account_data/{type}. Only for the caller's own user ID (403
// M_FORBIDDEN). An absent entry is 404 M_NOT_FOUND (js-sdk reads that as "none"). The body must
// be a JSON object, at most the server's body limit; m.fully_read and m.push_rules are the
// server's (405 M_BAD_JSON). Each write advances the user's account-data stream, which a /sync
// reads. Rooms are only checked for the shape of their ID until rooms exist (issue #8 §2: then a
// room's data should need a membership).

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/push_rule_service.hpp"

namespace myelin::api::client {
namespace {

// What the path names: user, room ("" for global data) and type, checked. Errors: 400
// M_INVALID_PARAM (room ID, type), 403 M_FORBIDDEN.
struct Target {
    std::string user_id;
    std::string room_id;
    std::string type;
};

Result<Target> target_of(const RequestContext& ctx, bool in_room) {
    const auto& params = ctx.request.path_params;
    Target t;
    t.user_id = params.at(0);
    if (auto own = require_own_user(ctx, t.user_id); !own) return own.error();
    if (in_room) {
        t.room_id = params.at(1);
        if (!is_room_id_shaped(t.room_id)) return errors::invalid_param("Invalid room ID");
    }
    t.type = params.at(in_room ? 2 : 1);
    if (t.type.empty() || t.type.size() > 255) {
        return errors::invalid_param("Invalid account data type");
    }
    return t;
}

boost::asio::awaitable<Result<http::Response>> get_data(Services& services, RequestContext& ctx,
                                                        bool in_room) {
    auto target = target_of(ctx, in_room);
    if (!target) co_return target.error();
    auto op = services.client_data.account_data.get(
        std::move(target->user_id), std::move(target->room_id), std::move(target->type));
    auto content = co_await std::move(op);
    if (!content) co_return content.error();
    co_return raw_json_response(std::move(*content));
}

boost::asio::awaitable<Result<http::Response>> put_data(Services& services, RequestContext& ctx,
                                                        bool in_room) {
    auto target = target_of(ctx, in_room);
    if (!target) co_return target.error();
    if (target->type == "m.fully_read" || target->type == service::kPushRulesAccountDataType) {
        co_return errors::make(405, "M_BAD_JSON",
                               "Cannot set " + target->type + " through this API");
    }
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto op = services.client_data.account_data.put(
        std::move(target->user_id), std::move(target->room_id), std::move(target->type),
        boost::json::serialize(*body));
    auto pos = co_await std::move(op);
    if (!pos) co_return pos.error();
    co_return http::json_response(boost::json::object{});
}

// GET /user/{userId}/account_data/{type}: the content. Errors: 400, 403, 404, 503.
boost::asio::awaitable<Result<http::Response>> get_global(Services& services, RequestContext& ctx) {
    return get_data(services, ctx, false);
}
// PUT /user/{userId}/account_data/{type}: 200 {}. Errors: 400 M_NOT_JSON / M_BAD_JSON /
// M_INVALID_PARAM, 403, 405 M_BAD_JSON (server-controlled type), 413, 503.
boost::asio::awaitable<Result<http::Response>> put_global(Services& services, RequestContext& ctx) {
    return put_data(services, ctx, false);
}
// GET /user/{userId}/rooms/{roomId}/account_data/{type}. Errors: as the global GET.
boost::asio::awaitable<Result<http::Response>> get_room(Services& services, RequestContext& ctx) {
    return get_data(services, ctx, true);
}
// PUT /user/{userId}/rooms/{roomId}/account_data/{type}. Errors: as the global PUT.
boost::asio::awaitable<Result<http::Response>> put_room(Services& services, RequestContext& ctx) {
    return put_data(services, ctx, true);
}

}  // namespace

void add_account_data_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/user/{userId}/account_data/{type}", get_global);
    routes.add(http::Method::kPut, "/user/{userId}/account_data/{type}", put_global);
    routes.add(http::Method::kGet, "/user/{userId}/rooms/{roomId}/account_data/{type}", get_room);
    routes.add(http::Method::kPut, "/user/{userId}/rooms/{roomId}/account_data/{type}", put_room);
}

}  // namespace myelin::api::client
