#pragma once

// Presence (presence.yaml): PUT/GET /presence/{userId}/status. Each user's last state (online,
// unavailable, offline), status message and the time of their last "online", kept in memory
// by this process only: not persisted (a restart forgets it) and not shared between instances
// of one PostgreSQL database (as typing). Reading it derives what the spec reports:
//   - `online` set more than kIdleAfter ago reads as `unavailable` (the user went idle; the same
//     5 minutes as Synapse), so a client that vanished is not shown online for ever;
//   - `currently_active` is true while the last `online` is at most kActiveWindow old;
//   - a user who never set a state is `offline` with no last_active_ago.
// /sync does not carry m.presence yet (docs/sync.md).
//
// Thread-safety: every method may be called from any thread (one mutex around the map).
// The map holds one small entry per local user who ever set presence.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// What GET /presence/{userId}/status answers.
struct PresenceView {
    std::string presence = "offline";             // "online", "unavailable" or "offline"
    std::optional<std::int64_t> last_active_ago;  // ms since the last "online"; unknown: nullopt
    std::optional<std::string> status_msg;
    bool currently_active = false;
};

class PresenceService {
public:
    static constexpr std::chrono::milliseconds kIdleAfter{5 * 60 * 1000};
    static constexpr std::chrono::milliseconds kActiveWindow{60 * 1000};
    // A status message longer than this is refused (400 M_INVALID_PARAM).
    static constexpr std::size_t kMaxStatusMsgBytes = 1024;

    // `db` and `clock` must outlive the service.
    PresenceService(storage::Database& db, const Clock& clock) : db_(db), clock_(clock) {}

    // Sets the user's state ("online", "unavailable" or "offline") and status message (nullopt:
    // none; it replaces the previous one). "online" also marks the user active now. Errors: 400
    // M_INVALID_PARAM (another state, a status message over kMaxStatusMsgBytes). No I/O.
    Result<void> set(const std::string& user_id, std::string_view presence,
                     std::optional<std::string> status_msg);

    // The user's presence as of now. No I/O.
    PresenceView view(const std::string& user_id) const;

    // The presence of `target` as `viewer` may see it: oneself, or a user sharing a joined room
    // with the viewer (one read job). Errors: 404 M_NOT_FOUND (no such user on this server),
    // 403 M_FORBIDDEN (no shared room), 503.
    boost::asio::awaitable<Result<PresenceView>> view_for(std::string viewer, std::string target);

private:
    struct Entry {
        std::string presence;
        std::optional<std::string> status_msg;
        std::optional<std::int64_t> last_active_ms;  // wall clock of the last "online"
    };

    storage::Database& db_;
    const Clock& clock_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;  // guarded by mutex_
};

}  // namespace myelin::service
