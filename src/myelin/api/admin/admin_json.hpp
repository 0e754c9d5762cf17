#pragma once

// The JSON shapes of the admin API, shared by the HTTP routes and `myelin admin --json` so that
// both speak the same format. Timestamps are milliseconds since the epoch; absent values are
// null. Never includes a password hash. Pure functions, thread-safe.

#include <boost/json/object.hpp>

#include "myelin/storage/records.hpp"

namespace myelin::api::admin {

// {user_id, admin, deactivated, guest, has_password, created_ts}
boost::json::object user_json(const storage::UserRecord& user);
// {device_id, display_name, created_ts, last_seen_ts, last_seen_ip}
boost::json::object device_json(const storage::DeviceRecord& device);
// {token, uses_allowed, pending, completed, expiry_time}
boost::json::object registration_token_json(const storage::RegistrationTokenRecord& token);
// {id, ts, kind, device_id, detail}
boost::json::object security_event_json(const storage::SecurityEventRecord& event);

}  // namespace myelin::api::admin
