#pragma once

// Matrix identifiers as the authorization rules need them (spec appendix "Identifier
// Grammar"). Pure functions, thread-safe.

#include <string_view>

namespace myelin::events {

// The server name of a user, room or event ID ("@u:example.org:8448" -> "example.org:8448"):
// everything after the first ':'; empty when there is none.
[[nodiscard]] std::string_view server_name_of(std::string_view id) noexcept;

// True when `name` is a server name: a DNS name, an IPv4 address or a bracketed IPv6 literal,
// optionally followed by ":" and a port of 1 to 5 digits.
[[nodiscard]] bool is_valid_server_name(std::string_view name) noexcept;

// True when `id` is a user ID: "@", a non-empty localpart without ':' (historical localparts
// allowed: any printable ASCII except ':'), ":", a valid server name, at most 255 bytes.
[[nodiscard]] bool is_valid_user_id(std::string_view id) noexcept;

}  // namespace myelin::events
