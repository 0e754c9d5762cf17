#pragma once

// Who is typing in which room (typing.yaml, m.typing), in memory: per room, the typing users and
// when each stops, and a serial that changes whenever the room's set of typing users changes.
// /sync hands out the newest serial as a token position and sends a room's m.typing when the
// room's serial is newer than the one a client presented.
//
// Serials increase across all rooms and follow the wall clock when it is ahead
// (serial = max(previous + 1, now_ms)), so that a process started later hands out higher ones
// than an earlier process did; first_serial() tells tokens of an earlier process (or of another
// instance) apart.
//
// Nothing expires by itself: snapshot() leaves out users whose time is up (without changing
// anything), and expire() drops them and takes a serial, which is what the owner's timer calls
// (typing_service.hpp). Times are milliseconds since the epoch, given by the caller.
//
// Thread-safety: every method may be called from any thread (one mutex).

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace myelin::service {

class TypingSet {
public:
    // Serials handed out start above `first_serial` (a process's start time in ms).
    explicit TypingSet(std::int64_t first_serial)
        : first_serial_(first_serial), serial_(first_serial) {}

    // Marks `user_id` as typing in the room until `until_ms` (typing) or as not typing. Returns
    // true when the room's set of typing users changed, which takes a new serial; renewing the
    // time of a user already typing, or stopping one who was not, changes nothing.
    bool set(std::string_view room_id, std::string_view user_id, bool typing, std::int64_t now_ms,
             std::int64_t until_ms);

    // What expire() did: whether users were dropped (a new serial then), and when the next of
    // the room's remaining users is due (nullopt: nobody left typing).
    struct Expiry {
        bool changed = false;
        std::optional<std::int64_t> next_until_ms;
    };
    // Drops the room's users whose time is up at `now_ms` (until_ms <= now_ms).
    Expiry expire(std::string_view room_id, std::int64_t now_ms);

    // One room as a sync sees it.
    struct RoomTyping {
        std::int64_t serial = 0;            // the serial of the room's last change
        std::vector<std::string> user_ids;  // typing at now_ms, sorted
    };
    struct Snapshot {
        std::int64_t serial = 0;  // the newest serial (of any room)
        // The rooms asked for that ever had a typing user (others: nobody typing, serial 0).
        std::map<std::string, RoomTyping, std::less<>> rooms;
    };
    // The newest serial and, in the same instant, the asked rooms' serials and users typing at
    // `now_ms` (users whose time is up are left out, not removed).
    Snapshot snapshot(const std::vector<std::string>& room_ids, std::int64_t now_ms) const;

    // The newest serial handed out (first_serial() before any change).
    std::int64_t serial() const;
    // The serial this set started from: a token position below it is from an earlier process.
    std::int64_t first_serial() const { return first_serial_; }

private:
    struct Room {
        std::int64_t serial = 0;
        std::map<std::string, std::int64_t, std::less<>> until_ms;  // user -> when they stop
    };
    // Under mutex_: a new serial for a change at `now_ms`.
    std::int64_t next_serial_locked(std::int64_t now_ms);

    const std::int64_t first_serial_;
    mutable std::mutex mutex_;
    std::int64_t serial_;
    // Rooms stay once they had a typing user, so that the change to "nobody" keeps its serial
    // (a few dozen bytes per room).
    std::map<std::string, Room, std::less<>> rooms_;
};

}  // namespace myelin::service
