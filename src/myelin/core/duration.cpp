#include "myelin/core/duration.hpp"

#include <charconv>
#include <cstdint>

namespace myelin {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
    if (text == "0") return std::chrono::milliseconds(0);
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
    if (digits == 0 || digits > 12) return std::nullopt;
    std::int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, value);
    if (ec != std::errc() || ptr != text.data() + digits) return std::nullopt;
    std::string_view unit = text.substr(digits);
    std::int64_t scale = 0;
    if (unit == "ms")
        scale = 1;
    else if (unit == "s")
        scale = 1000;
    else if (unit == "m")
        scale = 60'000;
    else if (unit == "h")
        scale = 3'600'000;
    else if (unit == "d")
        scale = 86'400'000;
    else
        return std::nullopt;
    constexpr std::int64_t kMaxMs = 100LL * 365 * 86'400'000;
    if (value > kMaxMs / scale) return std::nullopt;
    return std::chrono::milliseconds(value * scale);
}

std::string format_duration(std::chrono::milliseconds d) {
    std::int64_t ms = d.count();
    if (ms == 0) return "0";
    struct Unit {
        std::int64_t scale;
        const char* name;
    };
    static constexpr Unit kUnits[] = {
        {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
    for (const auto& u : kUnits) {
        if (ms % u.scale == 0) return std::to_string(ms / u.scale) + u.name;
    }
    return std::to_string(ms) + "ms";
}

}  // namespace myelin
