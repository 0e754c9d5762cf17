#pragma once

// Matrix canonical JSON (spec appendix "Canonical JSON"): the shortest UTF-8 encoding, object keys
// sorted by Unicode codepoint, no insignificant whitespace, only the escapes the grammar requires
// ("\"", "\\", \b \t \n \f \r and \u00xx in lower-case hex for other control characters), and
// numbers only as integers in [-(2^53)+1, 2^53-1].
//
// Numbers: Boost.JSON keeps "1e10" and "-0" as doubles. The appendix's own example encodes
// {"a": -0, "b": 1e10} as {"a":0,"b":10000000000}, so a double whose value is an integer inside
// the range is accepted and written as that integer; any other double (1.5, NaN, 2^60) is
// refused, as is an integer outside the range.
//
// Pure functions, thread-safe. Errors are 400 M_BAD_JSON with a message naming the problem and
// its JSON path (never the value).

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "myelin/core/error.hpp"

namespace myelin::events {

inline constexpr std::int64_t kMaxSafeInteger = (std::int64_t{1} << 53) - 1;
inline constexpr std::int64_t kMinSafeInteger = -kMaxSafeInteger;
// Nesting deeper than this is refused (the encoder recurses).
inline constexpr int kMaxCanonicalDepth = 64;

// The canonical encoding of `value`. Fails (400 M_BAD_JSON) on a number outside the rules
// above, a string or key that is not valid UTF-8 (overlong forms, surrogates and code points
// above U+10FFFF included), or nesting deeper than kMaxCanonicalDepth.
[[nodiscard]] Result<std::string> encode_canonical_json(const boost::json::value& value);

// A copy of `value` in which every number is an int64 (integral doubles and small uint64 are
// converted), after the same checks as encode_canonical_json. Event content is normalised so
// that what is stored, hashed and checked by the authorization rules agree.
[[nodiscard]] Result<boost::json::value> normalise_canonical_json(const boost::json::value& value);

// Parses `text` (strict JSON, no comments or trailing commas) and normalises it. Fails with
// 400 M_NOT_JSON for text that is not JSON, or M_BAD_JSON as above.
[[nodiscard]] Result<boost::json::value> parse_canonical_json(std::string_view text);

// True when `value` is an integer that canonical JSON admits (int64 or uint64 within range;
// doubles are not integers here: normalised values never hold them).
[[nodiscard]] bool is_canonical_integer(const boost::json::value& value) noexcept;

// True when `text` is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
[[nodiscard]] bool is_valid_utf8(std::string_view text) noexcept;

}  // namespace myelin::events
