#pragma once

// The room versions this server builds and authorizes: 10 and 11 (spec "Room Versions"). Both
// use reference-hash event IDs (v4 format), strict canonical JSON (v6), integer-only power
// levels (v10) and the restricted/knock_restricted join rules. They differ in:
//   - m.room.create: v10 requires content.creator (the room's creator); v11 drops it and the
//     creator is the event's sender;
//   - m.room.redaction: v10 has `redacts` at the top level, v11 in content;
//   - the redaction algorithm (v9 rules for v10, v11 rules for v11).
// Constant data, thread-safe.

#include <span>
#include <string_view>

namespace myelin::events {

enum class RedactionRules { v9, v11 };

struct RoomVersion {
    std::string_view id;
    // The creator is content.creator of m.room.create (and it must be present); otherwise the
    // create event's sender.
    bool creator_in_content;
    // m.room.redaction keeps `redacts` under content rather than at the top level.
    bool redacts_in_content;
    RedactionRules redaction;
};

inline constexpr RoomVersion kRoomVersion10{"10", true, false, RedactionRules::v9};
inline constexpr RoomVersion kRoomVersion11{"11", false, true, RedactionRules::v11};

// The version new rooms get when the client names none.
inline constexpr std::string_view kDefaultRoomVersion = "10";

// The version with identifier `id`, or nullptr when this server does not support it.
[[nodiscard]] const RoomVersion* find_room_version(std::string_view id) noexcept;

// Every supported version, oldest first (for /capabilities).
[[nodiscard]] std::span<const RoomVersion* const> supported_room_versions() noexcept;

}  // namespace myelin::events
