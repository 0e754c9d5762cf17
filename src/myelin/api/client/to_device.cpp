// PUT /sendToDevice/{eventType}/{txnId} (to_device.yaml): body {"messages": {user: {device or
// "*": content}}}. The messages are queued per recipient device for a later /sync; a txnId the
// sending device used before queues nothing again (200 {} all the same). Recipients on other
// servers and unknown devices are dropped (no federation yet).

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/to_device_service.hpp"

namespace myelin::api::client {
namespace {

// A request may address many devices (room key sharing in a big room).
constexpr std::size_t kToDeviceBodyLimit = 1024 * 1024;
constexpr std::size_t kMaxMessages = 10000;

// 200 {}. Errors: 400 M_NOT_JSON / M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM (event type
// or txnId too long), 503.
boost::asio::awaitable<Result<http::Response>> put_send(Services& services, RequestContext& ctx) {
    const std::string& type = ctx.request.path_params.at(0);
    const std::string& txn_id = ctx.request.path_params.at(1);
    if (type.size() > 255) co_return errors::invalid_param("Event type too long");
    if (txn_id.size() > 255) co_return errors::invalid_param("Transaction ID too long");
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto messages = json::optional_object(*body, "messages");
    if (!messages) co_return messages.error();
    if (*messages == nullptr) co_return errors::missing_param("Missing 'messages'");
    std::vector<service::ToDeviceMessage> out;
    for (const auto& [user, devices] : **messages) {
        if (!is_user_id_shaped(user)) co_return errors::bad_json("Invalid user ID in messages");
        const auto* map = devices.if_object();
        if (map == nullptr) co_return errors::bad_json("messages must map users to objects");
        for (const auto& [device, content] : *map) {
            if (!content.is_object())
                co_return errors::bad_json("Message contents must be objects");
            if (out.size() >= kMaxMessages) co_return errors::bad_json("Too many messages");
            out.push_back(service::ToDeviceMessage{std::string(user), std::string(device),
                                                   boost::json::serialize(content)});
        }
    }
    auto op = services.client_data.to_device.send(
        ctx.identity->user_id(), ctx.identity->device_id(), txn_id, type, std::move(out));
    auto sent = co_await std::move(op);
    if (!sent) co_return sent.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_to_device_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPut, "/sendToDevice/{eventType}/{txnId}", put_send,
               kToDeviceBodyLimit);
}

}  // namespace myelin::api::client
