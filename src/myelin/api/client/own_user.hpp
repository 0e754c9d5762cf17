#pragma once

// Checks shared by the endpoints whose path names a user ({userId}) that must be the caller,
// and the shapes of IDs they take from the path. Pure functions, thread-safe.

#include <string>
#include <string_view>

#include "myelin/api/router.hpp"
#include "myelin/core/error.hpp"
#include "myelin/http/response.hpp"

namespace myelin::api::client {

// OK when `user_id` is the authenticated caller. Errors: 403 M_FORBIDDEN.
Result<void> require_own_user(const RequestContext& ctx, std::string_view user_id);

// Whether `room_id` looks like a room ID: "!" then at least one more character, at most 255
// bytes, no control characters.
bool is_room_id_shaped(std::string_view room_id);

// Whether `user_id` looks like a user ID: "@localpart:server", at most 255 bytes.
bool is_user_id_shaped(std::string_view user_id);

// A 200 response whose body is `json`, already serialized.
http::Response raw_json_response(std::string json);

}  // namespace myelin::api::client
