#pragma once

// GET /sync (sync.yaml), a first cut of issue #8 §3: initial and incremental syncs with opaque
// tokens (sync_token.hpp), `timeout` long-polls woken by the UserNotifier, `full_state`, and
// the simple parts of a filter (room.timeline limit/types/not_types/senders/not_senders,
// room.rooms/not_rooms).
//
// One sync is one or two storage read jobs (the second only after a long-poll wait) and, when
// the `since` token acknowledges to-device messages still stored, one write job deleting them.
// A read job reads every stream position and everything it returns in one snapshot, so the
// next_batch it hands out is exactly what the answer covers.
//
// What is in an answer:
// - rooms.join: rooms the user is joined to. Initial sync, `full_state`, or a room joined after
//   `since`: the current state (minus what the timeline holds) and the last `limit` (10) events;
//   incremental: the events after `since` (at most `limit`, `limited` when more were there, and
//   then the current state events that changed in the gap), skipped when nothing changed.
//   prev_batch is a /rooms/{roomId}/messages token (dir=b) for the events before the timeline.
//   Per-room account data. `ephemeral`: m.typing (initial sync or a room joined after `since`:
//   when someone is typing; incremental: when the room's typing set changed after `since`) and
//   m.receipt (the receipts after `since`, all on an initial sync; m.read.private only the
//   user's own).
// - rooms.invite: invites (initial: all; incremental: those after `since`) with stripped state
//   (create, name, topic, avatar, join rules, canonical alias, encryption, the invite itself).
// - rooms.leave: incremental only: rooms left (or banned from) after `since`, with the events
//   from `since` up to the leave.
// - account_data: global entries changed after `since` (all on an initial sync); m.push_rules
//   as the merged ruleset {"global": ...} (always present on an initial sync).
// - to_device: the device's messages after `since` (at most 100 a sync); those at or before
//   `since` were delivered and are deleted.
// - device_lists.changed (incremental): users sharing a joined room with the caller (or the
//   caller) whose device list changed after `since`. device_one_time_keys_count and
//   device_unused_fallback_key_types of the device.
//
// Thread-safety: immutable after construction; sync() may run on any network thread (it must
// be awaited on the network thread's executor, for UserNotifier::wait).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/room_service.hpp"
#include "myelin/service/sync_token.hpp"
#include "myelin/service/typing_service.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// The parts of a sync filter (filter.yaml's Filter) this server applies.
struct SyncFilter {
    int timeline_limit = 10;
    std::optional<std::vector<std::string>> timeline_types;  // nullopt: every type
    std::vector<std::string> timeline_not_types;
    std::optional<std::vector<std::string>> timeline_senders;
    std::vector<std::string> timeline_not_senders;
    std::optional<std::vector<std::string>> rooms;  // nullopt: every room
    std::vector<std::string> not_rooms;
};

// The filter's applied parts, from a Filter JSON object. Parts of the wrong shape are ignored
// (as absent); the limit is clamped to 0..1000. Pure.
[[nodiscard]] SyncFilter parse_sync_filter(const boost::json::object& filter);

// GET /sync, decoded.
struct SyncRequest {
    std::optional<SyncToken> since;
    std::optional<std::int64_t> filter_id;  // a stored filter (wins over `filter`)
    SyncFilter filter;
    bool full_state = false;
    std::chrono::milliseconds timeout{0};
};

class SyncService {
public:
    // `db`, `notifier` and `typing` must outlive the service.
    SyncService(storage::Database& db, UserNotifier& notifier, const TypingService& typing)
        : db_(db), notifier_(notifier), typing_(typing) {}

    // The sync answer (sync.yaml's 200 body). With `since` and a timeout, waits (without a
    // thread) until something for the user is committed or the timeout passes, then answers
    // (an empty answer keeps next_batch). Errors: 400 M_INVALID_PARAM (unknown filter ID),
    // 503.
    boost::asio::awaitable<Result<boost::json::object>> sync(Actor actor, SyncRequest request);

private:
    storage::Database& db_;
    UserNotifier& notifier_;
    const TypingService& typing_;
};

}  // namespace myelin::service
