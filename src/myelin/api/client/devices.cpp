// Device management (device_management.yaml, definitions/client_device.yaml; spec digest §13.5):
// GET /devices, GET/PUT/DELETE /devices/{deviceId}, POST /delete_devices. Deleting needs
// User-Interactive Authentication (m.login.password) through the shared UiaEngine, because it
// kills the device's tokens: a stolen token alone must not lock the real user out. Every route
// answers under /v3 and /r0.

#include <boost/json.hpp>

#include "myelin/api/client/request_bodies.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/service/uia.hpp"

namespace myelin::api::client {
namespace {

// A bulk delete names up to thousands of device IDs (each up to 255 bytes).
constexpr std::size_t kDeleteDevicesBodyLimit = 1024 * 1024;

Error guest_forbidden() {
    return errors::make(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest accounts cannot delete devices");
}

// The Device object: display_name, last_seen_ip and last_seen_ts only when known.
boost::json::object device_json(const storage::DeviceRecord& d) {
    boost::json::object out;
    out["device_id"] = d.device_id;
    if (d.display_name) out["display_name"] = *d.display_name;
    if (!d.last_seen_ip.empty()) out["last_seen_ip"] = d.last_seen_ip;
    if (d.last_seen_ts > 0) out["last_seen_ts"] = d.last_seen_ts;
    return out;
}

// Deleting devices: the signed-in user proves their password, in a session bound to `endpoint`.
service::UiaChallenge delete_challenge(std::string endpoint, const service::Identity& id) {
    service::UiaChallenge challenge;
    challenge.endpoint = std::move(endpoint);
    challenge.user_id = id.user_id();
    challenge.flows = {{std::string(service::kStagePassword)}};
    return challenge;
}

// GET /devices: the caller's devices. Errors: 401 (token), 503.
boost::asio::awaitable<Result<http::Response>> get_devices(Services& services,
                                                           RequestContext& ctx) {
    auto op = services.devices.list(ctx.identity->user_id());
    auto devices = co_await std::move(op);
    if (!devices) co_return devices.error();
    boost::json::array list;
    list.reserve(devices->size());
    for (const auto& d : *devices) list.emplace_back(device_json(d));
    boost::json::object out;
    out["devices"] = std::move(list);
    co_return http::json_response(out);
}

// GET /devices/{deviceId}. Errors: 404 M_NOT_FOUND (no such device of the caller's), 503.
boost::asio::awaitable<Result<http::Response>> get_device(Services& services, RequestContext& ctx) {
    auto op = services.devices.get(ctx.identity->user_id(), ctx.request.path_params.at(0));
    auto device = co_await std::move(op);
    if (!device) co_return device.error();
    co_return http::json_response(device_json(*device));
}

// PUT /devices/{deviceId}: body {"display_name"?} (absent or null: unchanged). 200 {}. Only
// existing devices: creating one this way is for application services (v1.17), which this
// server does not have. Errors: 400 M_NOT_JSON/M_BAD_JSON, 404 M_NOT_FOUND, 503.
boost::asio::awaitable<Result<http::Response>> put_device(Services& services, RequestContext& ctx) {
    auto display_name = decode_device_update(ctx.request.body);
    if (!display_name) co_return display_name.error();
    auto op = services.devices.rename(ctx.identity->user_id(), ctx.request.path_params.at(0),
                                      std::move(*display_name));
    auto renamed = co_await std::move(op);
    if (!renamed) co_return renamed.error();
    co_return http::json_response(boost::json::object{});
}

// DELETE /devices/{deviceId}: body {"auth"?}. UIA (m.login.password), then the device's
// sessions end and it is removed. 200 {} also when the device was already gone. Errors: 400
// M_NOT_JSON/M_BAD_JSON (body), 401 UIA (M_FORBIDDEN after a wrong password), 403
// M_FORBIDDEN (UIA session of another endpoint or user) / M_GUEST_ACCESS_FORBIDDEN, 429, 503.
boost::asio::awaitable<Result<http::Response>> delete_device(Services& services,
                                                             RequestContext& ctx) {
    const auto& id = *ctx.identity;
    if (id.is_guest()) co_return guest_forbidden();
    auto auth = decode_device_delete(ctx.request.body);
    if (!auth) co_return auth.error();
    const std::string& device_id = ctx.request.path_params.at(0);

    auto uia_op = services.uia.authenticate(*auth ? &**auth : nullptr,
                                            delete_challenge("DELETE /devices/" + device_id, id));
    auto completed = co_await std::move(uia_op);
    if (!completed) co_return completed.error();

    std::vector<std::string> ids;
    ids.push_back(device_id);
    auto op = services.devices.remove(id.user_id(), std::move(ids));
    auto removed = co_await std::move(op);
    if (!removed) co_return removed.error();
    co_return http::json_response(boost::json::object{});
}

// POST /delete_devices: body {"devices": [ids] (required), "auth"?}. The list is checked before
// UIA (a bad request costs no session); then every listed device goes in one transaction. 200
// {} also for devices already gone. Errors: 400 M_NOT_JSON/M_BAD_JSON/M_MISSING_PARAM, 401 UIA,
// 403 M_FORBIDDEN / M_GUEST_ACCESS_FORBIDDEN, 413, 429, 503.
boost::asio::awaitable<Result<http::Response>> post_delete_devices(Services& services,
                                                                   RequestContext& ctx) {
    const auto& id = *ctx.identity;
    if (id.is_guest()) co_return guest_forbidden();
    auto body = decode_delete_devices(ctx.request.body);
    if (!body) co_return body.error();

    auto uia_op = services.uia.authenticate(body->auth ? &*body->auth : nullptr,
                                            delete_challenge("POST /delete_devices", id));
    auto completed = co_await std::move(uia_op);
    if (!completed) co_return completed.error();

    auto op = services.devices.remove(id.user_id(), std::move(body->devices));
    auto removed = co_await std::move(op);
    if (!removed) co_return removed.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_device_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/devices", get_devices);
    routes.add(http::Method::kGet, "/devices/{deviceId}", get_device);
    routes.add(http::Method::kPut, "/devices/{deviceId}", put_device);
    routes.add(http::Method::kDelete, "/devices/{deviceId}", delete_device);
    routes.add(http::Method::kPost, "/delete_devices", post_delete_devices,
               kDeleteDevicesBodyLimit);
}

}  // namespace myelin::api::client
