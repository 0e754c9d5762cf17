#pragma once

// Reading JSON request bodies into typed values, with the Matrix errors clients expect:
// not JSON at all → 400 M_NOT_JSON; JSON of the wrong shape or type → 400 M_BAD_JSON; a
// required field absent → 400 M_MISSING_PARAM. Pure functions, thread-safe.

#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"

namespace myelin::json {

// Parses `body` as a JSON object (max nesting 32, strict UTF-8). An empty body counts as `{}`
// only when `empty_is_object` (for endpoints like /logout whose body the spec leaves empty).
// A string (or key) holding U+0000 is M_BAD_JSON: no Matrix field needs it, and PostgreSQL text
// cannot store it (libpq would cut the value at the NUL, so "dev\u0000x" would become "dev").
Result<boost::json::object> parse_object(std::string_view body, bool empty_is_object = false);

// The string at `key`; M_MISSING_PARAM when absent (or null), M_BAD_JSON when not a string.
Result<std::string> required_string(const boost::json::object& obj, std::string_view key);

// The string at `key` or nullopt when absent or null; M_BAD_JSON when another type.
Result<std::optional<std::string>> optional_string(const boost::json::object& obj,
                                                   std::string_view key);

// The boolean at `key` or nullopt when absent or null; M_BAD_JSON when another type.
Result<std::optional<bool>> optional_bool(const boost::json::object& obj, std::string_view key);

// The object at `key` or nullptr when absent or null; M_BAD_JSON when another type. The pointer
// is into `obj`.
Result<const boost::json::object*> optional_object(const boost::json::object& obj,
                                                   std::string_view key);

}  // namespace myelin::json
