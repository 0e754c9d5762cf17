#pragma once

// Power levels as the authorization rules read them from the room state (spec
// m.room.power_levels, server-server "Definitions"). Defaults when the event or a key is
// missing: users_default 0, events_default 0, state_default 50, ban 50, kick 50, redact 50,
// invite 0 (the m.room.power_levels schema's default; the server-server definitions say 50 for
// all four levels, the event schema and other servers use 0 for invite). Without any
// m.room.power_levels event the room's creator has 100 and everyone else 0.
//
// A view over events owned by an AuthState: it must not outlive it. Thread-safe for reading.

#include <cstdint>
#include <string_view>

#include <boost/json/object.hpp>

#include "myelin/events/auth_state.hpp"
#include "myelin/events/room_version.hpp"

namespace myelin::events {

class PowerLevels {
public:
    PowerLevels(const AuthState& state, const RoomVersion& version);

    // The user's level: users[user_id], else users_default; without a power levels event, 100
    // for the creator and 0 for others.
    [[nodiscard]] std::int64_t user_level(std::string_view user_id) const;
    // The level needed to send an event of `type`: events[type], else state_default for state
    // events and events_default for others.
    [[nodiscard]] std::int64_t event_level(std::string_view type, bool is_state) const;
    [[nodiscard]] std::int64_t ban() const { return named("ban", 50); }
    [[nodiscard]] std::int64_t kick() const { return named("kick", 50); }
    [[nodiscard]] std::int64_t redact() const { return named("redact", 50); }
    [[nodiscard]] std::int64_t invite() const { return named("invite", 0); }

private:
    [[nodiscard]] std::int64_t named(std::string_view key, std::int64_t fallback) const;

    const boost::json::object* content_ = nullptr;  // null: no m.room.power_levels
    std::string_view creator_;
};

// The room's creator: content.creator of m.room.create in room version 10, its sender in 11.
[[nodiscard]] std::string_view room_creator(const boost::json::object& create_event,
                                            const RoomVersion& version);

}  // namespace myelin::events
