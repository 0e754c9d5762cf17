#pragma once

// How every SQL backend stores the stage lists of a UIA session (UiaSessionRecord::flows and
// ::completed) in a text column: as compact JSON, e.g. [["m.login.dummy"]] and
// ["m.login.registration_token"]. The encoding is canonical (one text per list), so that a
// compare-and-swap on the completed stages can compare the stored text.
//
// Thread-safety: pure functions.

#include <string>
#include <string_view>
#include <vector>

#include "myelin/core/error.hpp"

namespace myelin::storage {

// ["a","b"]
std::string encode_stages(const std::vector<std::string>& stages);
// [["a","b"],["c"]]
std::string encode_flows(const std::vector<std::vector<std::string>>& flows);

// The inverse of encode_stages. Error (500) when the text is not a JSON array of strings.
Result<std::vector<std::string>> decode_stages(std::string_view text);
// The inverse of encode_flows. Error (500) when the text is not a JSON array of such arrays.
Result<std::vector<std::vector<std::string>>> decode_flows(std::string_view text);

}  // namespace myelin::storage
