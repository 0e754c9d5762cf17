// Room tags (tags.yaml): GET /user/{userId}/rooms/{roomId}/tags, PUT and DELETE
// /user/{userId}/rooms/{roomId}/tags/{tag}. The tags are the room account data `m.tag`
// ({"tags": {tag: {order?}}}, service/room_tags.hpp), changed through the account-data service
// in one read-modify-write job, so /sync carries them in rooms.join.<room>.account_data and a
// change wakes the user's long-polls. Only for the caller's own user ID (403 M_FORBIDDEN). As
// for other room account data, the room ID is only checked for its shape (no membership needed,
// as Synapse). Removing a tag that is not there is 200 {} and writes nothing.

#include "myelin/service/room_tags.hpp"

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

// The user and room of the path, checked. Errors: 403 M_FORBIDDEN, 400 M_INVALID_PARAM.
Result<void> check_target(const RequestContext& ctx) {
    const auto& params = ctx.request.path_params;
    if (auto own = require_own_user(ctx, params.at(0)); !own) return own.error();
    if (!is_room_id_shaped(params.at(1))) return errors::invalid_param("Invalid room ID");
    return {};
}

// GET …/tags: 200 {"tags": {...}} ({} when none). Errors: 400, 403, 503.
boost::asio::awaitable<Result<http::Response>> get_tags(Services& services, RequestContext& ctx) {
    if (auto ok = check_target(ctx); !ok) co_return ok.error();
    const auto& params = ctx.request.path_params;
    auto op = services.client_data.account_data.get(params.at(0), params.at(1),
                                                    std::string(service::kRoomTagsType));
    auto stored = co_await std::move(op);
    std::optional<std::string> content;
    if (stored) {
        content = std::move(*stored);
    } else if (stored.error().status != 404) {
        co_return stored.error();
    }
    co_return http::json_response(service::tags_of(content));
}

// PUT …/tags/{tag} with the tag's content: 200 {}. Errors: 400 M_NOT_JSON / M_BAD_JSON /
// M_INVALID_PARAM, 403, 413, 503.
boost::asio::awaitable<Result<http::Response>> put_tag(Services& services, RequestContext& ctx) {
    if (auto ok = check_target(ctx); !ok) co_return ok.error();
    const auto& params = ctx.request.path_params;
    if (auto ok = service::check_tag_name(params.at(2)); !ok) co_return ok.error();
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    if (auto ok = service::check_tag_content(*body); !ok) co_return ok.error();
    service::AccountDataService::Change change =
        [tag = params.at(2), content = std::move(*body)](const std::optional<std::string>& stored) {
            return service::with_tag(stored, tag, content);
        };
    auto op = services.client_data.account_data.update(
        params.at(0), params.at(1), std::string(service::kRoomTagsType), std::move(change));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

// DELETE …/tags/{tag}: 200 {} (also when the tag was not there). Errors: 400, 403, 503.
boost::asio::awaitable<Result<http::Response>> delete_tag(Services& services, RequestContext& ctx) {
    if (auto ok = check_target(ctx); !ok) co_return ok.error();
    const auto& params = ctx.request.path_params;
    if (auto ok = service::check_tag_name(params.at(2)); !ok) co_return ok.error();
    service::AccountDataService::Change change =
        [tag = params.at(2)](
            const std::optional<std::string>& stored) -> Result<std::optional<std::string>> {
        return service::without_tag(stored, tag);
    };
    auto op = services.client_data.account_data.update(
        params.at(0), params.at(1), std::string(service::kRoomTagsType), std::move(change));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_room_tag_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/user/{userId}/rooms/{roomId}/tags", get_tags);
    routes.add(http::Method::kPut, "/user/{userId}/rooms/{roomId}/tags/{tag}", put_tag);
    routes.add(http::Method::kDelete, "/user/{userId}/rooms/{roomId}/tags/{tag}", delete_tag);
}

}  // namespace myelin::api::client
