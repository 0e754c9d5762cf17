#include "myelin/service/sync_token.hpp"

#include <array>
#include <charconv>
#include <system_error>

namespace myelin::service {

std::string format_sync_token(const SyncToken& token) {
    std::string out = "s";
    out += std::to_string(token.events);
    out += '_';
    out += std::to_string(token.account_data);
    out += '_';
    out += std::to_string(token.to_device);
    out += '_';
    out += std::to_string(token.device_lists);
    out += '_';
    out += std::to_string(token.receipts);
    out += '_';
    out += std::to_string(token.typing);
    return out;
}

std::optional<SyncToken> parse_sync_token(std::string_view text) {
    // Six 19-digit numbers, five separators and the prefix at most.
    if (text.size() < 12 || text.size() > 120 || text[0] != 's') return std::nullopt;
    std::array<std::int64_t, 6> parts{};
    std::size_t pos = 1;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) {
            if (pos >= text.size() || text[pos] != '_') return std::nullopt;
            ++pos;
        }
        if (pos >= text.size() || text[pos] < '0' || text[pos] > '9') return std::nullopt;
        const char* first = text.data() + pos;
        const char* last = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(first, last, parts[i]);
        if (ec != std::errc() || parts[i] < 0) return std::nullopt;
        pos = static_cast<std::size_t>(ptr - text.data());
    }
    if (pos != text.size()) return std::nullopt;
    return SyncToken{parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]};
}

}  // namespace myelin::service
