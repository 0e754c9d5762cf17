#pragma once

// Matrix user IDs and device IDs as this server creates and accepts them (spec appendix
// "Identifier grammar", v1.8+ localpart grammar). Pure functions, thread-safe.

#include <optional>
#include <string>
#include <string_view>

#include "myelin/core/error.hpp"

namespace myelin::service {

// Maps a requested username to the localpart we would create: lower-cases A-Z (the spec asks
// servers to downcase), then checks the v1.8+ grammar [a-z0-9._=/+-] and that the whole
// "@localpart:server_name" fits in 255 bytes. Errors: 400 M_INVALID_USERNAME.
Result<std::string> localpart_for_registration(std::string_view username,
                                               std::string_view server_name);

// Resolves what a client typed at login ("alice", "Alice", "@alice:server") to a full user ID
// on this server. Errors: 403 M_FORBIDDEN for a user ID of another server or an impossible name.
Result<std::string> user_id_for_login(std::string_view user, std::string_view server_name);

// "@" + localpart + ":" + server_name.
std::string make_user_id(std::string_view localpart, std::string_view server_name);

// A fresh device ID: 10 upper-case letters.
std::string generate_device_id();

// A fresh localpart for a registration without a username (12 characters of [a-z0-9]).
std::string generate_localpart();

}  // namespace myelin::service
