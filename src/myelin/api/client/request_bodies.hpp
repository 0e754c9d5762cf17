#pragma once

// Decoding of the JSON request bodies of the client auth endpoints (login, register, refresh,
// account password/deactivate, devices) into typed requests, with the Matrix errors of
// json/body.hpp. The handlers of this folder call these first; fuzz/fuzz_json_bodies.cpp drives
// every one of them. Pure functions: no I/O, no shared state, safe from any thread.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/account_service.hpp"

namespace myelin::api::client {

// POST /login (m.login.password): `type` must be "m.login.password" (else 400 M_UNKNOWN); the
// user from `identifier` {type: "m.id.user", user} or the legacy `user` (m.id.thirdparty and
// m.id.phone: 403 M_FORBIDDEN, other identifier types: 400 M_UNKNOWN), `password`, `device_id`
// (1 to 255 bytes, else 400 M_INVALID_PARAM), `initial_device_display_name` (cut to 100 code
// points), `refresh_token`.
// Other errors: 400 M_NOT_JSON, M_BAD_JSON (wrong types), M_MISSING_PARAM.
[[nodiscard]] Result<service::LoginRequest> decode_login(std::string_view body);

// POST /register: `kind` is the query parameter of that name (absent, "user" or "guest"; else
// 400 M_INVALID_PARAM, checked before the body). A guest's body yields only
// `initial_device_display_name` (cut to 100 code points); a user's also `username`, `password`,
// `device_id` (as for login), `inhibit_login`, `refresh_token` and the UIA `auth` object. Errors:
// 400 M_NOT_JSON, M_BAD_JSON, M_INVALID_PARAM.
[[nodiscard]] Result<service::RegistrationRequest> decode_register(
    std::optional<std::string_view> kind, std::string_view body);

// POST /refresh and the legacy POST /tokenrefresh: the `refresh_token` string (required).
// Errors: 400 M_NOT_JSON, M_BAD_JSON, M_MISSING_PARAM.
[[nodiscard]] Result<std::string> decode_refresh(std::string_view body);

// The body of POST /account/password.
struct PasswordChangeBody {
    std::string new_password;
    bool logout_devices = true;               // absent or null: true
    std::optional<boost::json::object> auth;  // the UIA `auth` object, if sent
};

// POST /account/password: `new_password` (required, at most `max_password_bytes` bytes, else
// 400 M_INVALID_PARAM), `logout_devices`, `auth`. Errors: 400 M_NOT_JSON, M_BAD_JSON,
// M_MISSING_PARAM, M_INVALID_PARAM.
[[nodiscard]] Result<PasswordChangeBody> decode_password_change(std::string_view body,
                                                                std::size_t max_password_bytes);

// The body of POST /account/deactivate (an empty body counts as {}).
struct DeactivateBody {
    std::optional<std::string> id_server;
    std::optional<bool> erase;
    std::optional<boost::json::object> auth;  // the UIA `auth` object, if sent
};

// POST /account/deactivate: `id_server`, `erase`, `auth`, all optional. Errors: 400 M_NOT_JSON,
// M_BAD_JSON.
[[nodiscard]] Result<DeactivateBody> decode_deactivate(std::string_view body);

// PUT /devices/{deviceId}: the new `display_name`, nullopt when absent or null (unchanged). An
// empty body counts as {}. Errors: 400 M_NOT_JSON, M_BAD_JSON, M_TOO_LARGE (a name over 100
// code points).
[[nodiscard]] Result<std::optional<std::string>> decode_device_update(std::string_view body);

// DELETE /devices/{deviceId}: the UIA `auth` object, nullopt when absent or null. An empty body
// counts as {}. Errors: 400 M_NOT_JSON, M_BAD_JSON.
[[nodiscard]] Result<std::optional<boost::json::object>> decode_device_delete(
    std::string_view body);

// The body of POST /delete_devices.
struct DeleteDevicesBody {
    std::vector<std::string> devices;
    std::optional<boost::json::object> auth;  // the UIA `auth` object, if sent
};

// POST /delete_devices: `devices` (required, an array of strings) and `auth`. Errors: 400
// M_NOT_JSON, M_BAD_JSON, M_MISSING_PARAM.
[[nodiscard]] Result<DeleteDevicesBody> decode_delete_devices(std::string_view body);

}  // namespace myelin::api::client
