#pragma once

// The admin HTTP API under /_myelin/admin/v1/ (Mount::kExact), the same operations as the
// `myelin admin` CLI. Every route needs an access token (AuthPolicy::kRequired) of a user whose
// account has the admin flag and is not deactivated: anyone else gets 403 M_FORBIDDEN.
//
//   GET    users/{userId}                   the account: user_id, admin, deactivated, ...
//   PUT    users/{userId}                   create it: {"password"?, "admin"?}
//   POST   users/{userId}/reset_password    {"new_password"} (ends every session)
//   POST   users/{userId}/deactivate        for good (ends every session)
//   GET    users/{userId}/devices           {"devices": [...]}
//   POST   users/{userId}/revoke            {"device_id"?}: ends sessions, keeps devices
//   GET    users/{userId}/security_events   ?limit=N (default 50), newest first
//   GET    registration_tokens              {"registration_tokens": [...]}
//   POST   registration_tokens              {"token"?, "uses_allowed"?, "expiry_time"?}
//   DELETE registration_tokens/{token}
//
// Thread-safety: the handlers keep no state; the services they call are thread-safe.

#include "myelin/api/router.hpp"
#include "myelin/api/services.hpp"
#include "myelin/service/admin_service.hpp"

namespace myelin::api::admin {

// The path prefix of every admin route.
inline constexpr std::string_view kPrefix = "/_myelin/admin/v1";

// Adds the admin routes. `services` and `admin` must outlive the router.
void add_admin_routes(Router& router, Services& services, service::AdminService& admin);

}  // namespace myelin::api::admin
