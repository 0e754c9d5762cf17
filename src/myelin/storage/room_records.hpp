#pragma once

// The rows of rooms and their events (issue #8), as plain values shared by every storage backend
// and the room service. No SQL types here. Timestamps are milliseconds since the epoch.
//
// Stream orderings: every event gets, when its write job commits, the next position of one
// server-wide counter (1, 2, 3, ...), and an event becomes visible only after every event with a
// smaller position did (SQLite: one writer; PostgreSQL: the counter row is updated in the job's
// SERIALIZABLE transaction, so event writes are serialised). A reader that remembers the highest
// position it saw (a /sync token) therefore never misses an event: "events of these rooms after
// N" and "membership changes of this user after N" are index range scans.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace myelin::storage {

struct RoomRecord {
    std::string room_id;
    std::string room_version;  // "10", "11"
    std::string creator;       // user ID
    std::int64_t created_ts = 0;
    bool is_public = false;  // listed in the public room directory
};

// An event as stored. `json` is the whole signed PDU as canonical JSON; after a redaction, the
// redacted form of it (the redaction algorithm of the room's version), and `redacted_by` the
// redaction's event ID.
struct EventRecord {
    std::int64_t stream_ordering = 0;
    std::string event_id;
    std::string room_id;
    std::int64_t depth = 0;
    std::string type;
    std::optional<std::string> state_key;  // set for state events
    std::string sender;
    std::int64_t origin_server_ts = 0;
    std::string json;
    std::string redacted_by;  // empty: not redacted
};

// An event to append to a room (WriteTxn::append_event). The PDU is complete (hashed, signed,
// its ID computed) and authorized by the caller.
struct NewEvent {
    std::string event_id;
    std::string room_id;
    std::int64_t depth = 0;
    std::string type;
    std::optional<std::string> state_key;  // set: the event becomes the current state there
    std::string sender;
    std::int64_t origin_server_ts = 0;
    std::string json;  // canonical JSON of the PDU
    // For m.room.member events: content.membership, which becomes state_key's membership.
    std::optional<std::string> membership;
    // The event's prev_events: they stop being forward extremities, the event becomes one.
    std::vector<std::string> prev_events;
};

// A user's current membership of a room: the newest m.room.member event for them.
struct MembershipRecord {
    std::string room_id;
    std::string user_id;
    std::string membership;  // "join", "invite", "leave", "ban", "knock"
    std::string event_id;
    std::int64_t stream_ordering = 0;  // of event_id
    bool forgotten = false;            // the user forgot the room (only after leaving it)
};

// One entry of a room's current state.
struct StateEntry {
    std::string type;
    std::string state_key;
    std::string event_id;
};

// A forward extremity of a room: an event no other event names in prev_events yet.
struct ExtremityRecord {
    std::string event_id;
    std::int64_t depth = 0;
};

// A local room alias ("#name:server").
struct RoomAliasRecord {
    std::string alias;
    std::string room_id;
    std::string creator;  // who created the alias
    std::int64_t created_ts = 0;
};

// Events of one room in stream order: those with after < stream_ordering <= upto, the oldest
// first (forwards) or the newest first (backwards), at most `limit` (none when limit <= 0).
struct EventRange {
    std::int64_t after = 0;
    std::int64_t upto = 0;
    bool backwards = false;
    int limit = 0;
};

// A client transaction (PUT .../send/{type}/{txnId}, .../redact/{id}/{txnId}): the event it
// created, so that a retry gets the same event ID. Scoped to user, device and room; `txn_id`
// carries the endpoint's prefix (the service's choice).
struct TransactionRecord {
    std::string user_id;
    std::string device_id;
    std::string room_id;
    std::string txn_id;
    std::string event_id;
    std::int64_t ts = 0;
};

// A read receipt (receipts.yaml): the newest event a user has read in a room, per receipt type
// ("m.read", or "m.read.private", which only its owner sees) and thread ("" for an unthreaded
// receipt, "main", or a thread root's event ID). One per (room_id, user_id, receipt_type,
// thread_id); it only moves forward in the room's stream order. Every stored change takes the
// next position of the global "receipts" stream (stream_positions), which /sync reads.
struct ReceiptRecord {
    std::string room_id;
    std::string user_id;
    std::string receipt_type;
    std::string thread_id;
    std::string event_id;
    std::int64_t event_stream_ordering = 0;  // of event_id: where the receipt is in the room
    std::int64_t ts = 0;                     // when the receipt was sent
    std::int64_t stream_pos = 0;             // the receipts-stream position of its last change
};

}  // namespace myelin::storage
