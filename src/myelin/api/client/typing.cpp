// PUT /rooms/{roomId}/typing/{userId} (typing.yaml; service/typing_service.hpp): body
// {typing: bool (required), timeout: ms (integer, optional; default 30 s, at most 2 minutes)}.
// A missing or non-boolean `typing`, or a non-integer `timeout`: 400 M_BAD_JSON.

#include <algorithm>
#include <chrono>

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/typing_service.hpp"

namespace myelin::api::client {
namespace {

struct TypingRequest {
    bool typing = false;
    std::chrono::milliseconds timeout = service::TypingService::kDefaultTimeout;
};

Result<TypingRequest> decode_typing(std::string_view text) {
    auto body = json::parse_object(text);
    if (!body) return body.error();
    TypingRequest r;
    auto typing = json::optional_bool(*body, "typing");
    if (!typing) return typing.error();
    if (!*typing) return errors::bad_json("typing is required and must be a boolean");
    r.typing = **typing;
    if (const auto* t = body->if_contains("timeout"); t != nullptr && !t->is_null()) {
        if (!t->is_int64()) return errors::bad_json("timeout must be an integer");
        const std::int64_t ms =
            std::clamp<std::int64_t>(t->as_int64(), 0, service::TypingService::kMaxTimeout.count());
        r.timeout = std::chrono::milliseconds(ms);
    }
    return r;
}

boost::asio::awaitable<Result<http::Response>> put_typing(Services& services, RequestContext& ctx) {
    auto request = decode_typing(ctx.request.body);
    if (!request) co_return request.error();
    service::Actor actor{std::string(ctx.identity->user_id()),
                         std::string(ctx.identity->device_id())};
    auto op = services.typing.set_typing(std::move(actor), ctx.request.path_params.at(0),
                                         ctx.request.path_params.at(1), request->typing,
                                         request->timeout);
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_typing_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPut, "/rooms/{roomId}/typing/{userId}", put_typing);
}

}  // namespace myelin::api::client
