#pragma once

// /sync's `since` / `next_batch` token: the positions of each stream the sync read up to, as
// "s<events>_<account_data>_<to_device>_<device_lists>_<receipts>_<typing>" (decimal,
// non-negative). Opaque to clients; only this server reads it. The events position is also a valid
// /messages token prefix-compatible value ("s<events>" is what /rooms/{roomId}/messages reads).
//
// Pure functions, thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace myelin::service {

struct SyncToken {
    std::int64_t events = 0;        // the global events stream (stream_ordering)
    std::int64_t account_data = 0;  // the user's account-data stream
    std::int64_t to_device = 0;     // the user's to-device stream
    std::int64_t device_lists = 0;  // the global device-lists stream
    std::int64_t receipts = 0;      // the global receipts stream
    std::int64_t typing = 0;        // the process's typing serial (service/typing_set.hpp)

    bool operator==(const SyncToken&) const = default;
};

// The token's text.
[[nodiscard]] std::string format_sync_token(const SyncToken& token);

// The token `text` names, or nullopt when it is not exactly six non-negative decimal
// positions in the format above (too long, signs, spaces, missing parts: all nullopt).
[[nodiscard]] std::optional<SyncToken> parse_sync_token(std::string_view text);

}  // namespace myelin::service
