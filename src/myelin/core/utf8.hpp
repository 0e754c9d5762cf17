#pragma once

// Checks on untrusted text. Pure functions, thread-safe.

#include <string_view>

namespace myelin {

// Whether `text` is well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates (U+D800 to
// U+DFFF), nothing above U+10FFFF, no truncated sequence. NUL bytes count as well-formed.
bool is_valid_utf8(std::string_view text);

}  // namespace myelin
