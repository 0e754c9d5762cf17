#pragma once

// Durations as operators write them in the config: "500ms", "30s", "5m", "1h", "7d", or "0"
// (which callers read as "off" or "never").

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace myelin {

// Parses "<integer><unit>" with unit one of ms, s, m, h, d, or a bare "0". Returns nullopt for
// anything else (negative numbers, missing unit, overflow beyond 100 years).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// The shortest exact spelling of `d` in the same syntax ("5m", "90s", "0").
std::string format_duration(std::chrono::milliseconds d);

}  // namespace myelin
