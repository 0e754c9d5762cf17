#include "myelin/service/typing_set.hpp"

#include <algorithm>

namespace myelin::service {

std::int64_t TypingSet::next_serial_locked(std::int64_t now_ms) {
    serial_ = std::max(serial_ + 1, now_ms);
    return serial_;
}

bool TypingSet::set(std::string_view room_id, std::string_view user_id, bool typing,
                    std::int64_t now_ms, std::int64_t until_ms) {
    std::lock_guard lock(mutex_);
    auto room = rooms_.find(room_id);
    if (!typing) {
        if (room == rooms_.end()) return false;
        auto user = room->second.until_ms.find(user_id);
        if (user == room->second.until_ms.end()) return false;
        // A user whose time was already up had left the set as sync sees it: still a change
        // here (the owner's timer may not have run yet).
        room->second.until_ms.erase(user);
        room->second.serial = next_serial_locked(now_ms);
        return true;
    }
    if (room == rooms_.end()) room = rooms_.emplace(std::string(room_id), Room{}).first;
    auto user = room->second.until_ms.find(user_id);
    if (user != room->second.until_ms.end() && user->second > now_ms) {
        user->second = until_ms;  // still typing: renewed, no change to the set
        return false;
    }
    if (user == room->second.until_ms.end()) {
        room->second.until_ms.emplace(std::string(user_id), until_ms);
    } else {
        user->second = until_ms;  // was expired (as sync sees it) and now types again
    }
    room->second.serial = next_serial_locked(now_ms);
    return true;
}

TypingSet::Expiry TypingSet::expire(std::string_view room_id, std::int64_t now_ms) {
    std::lock_guard lock(mutex_);
    Expiry out;
    auto room = rooms_.find(room_id);
    if (room == rooms_.end()) return out;
    auto& users = room->second.until_ms;
    for (auto it = users.begin(); it != users.end();) {
        if (it->second <= now_ms) {
            it = users.erase(it);
            out.changed = true;
        } else {
            if (!out.next_until_ms || it->second < *out.next_until_ms) {
                out.next_until_ms = it->second;
            }
            ++it;
        }
    }
    if (out.changed) room->second.serial = next_serial_locked(now_ms);
    return out;
}

TypingSet::Snapshot TypingSet::snapshot(const std::vector<std::string>& room_ids,
                                        std::int64_t now_ms) const {
    std::lock_guard lock(mutex_);
    Snapshot out;
    out.serial = serial_;
    for (const auto& room_id : room_ids) {
        auto room = rooms_.find(room_id);
        if (room == rooms_.end()) continue;
        RoomTyping view;
        view.serial = room->second.serial;
        for (const auto& [user, until] : room->second.until_ms) {
            if (until > now_ms) view.user_ids.push_back(user);  // std::map: sorted
        }
        out.rooms.emplace(room_id, std::move(view));
    }
    return out;
}

std::int64_t TypingSet::serial() const {
    std::lock_guard lock(mutex_);
    return serial_;
}

}  // namespace myelin::service
