#pragma once

// Writing small JSON documents straight into a string, for hot paths where building a
// boost::json::value first would cost several allocations. Pure functions, thread-safe.

#include <string>
#include <string_view>

namespace myelin::json {

// Appends `text` as a JSON string literal (quotes included), escaping '"', '\\' and control
// characters. `text` must be valid UTF-8 (it is copied through as is).
void append_string(std::string& out, std::string_view text);

}  // namespace myelin::json
