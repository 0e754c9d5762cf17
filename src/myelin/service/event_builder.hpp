#pragma once

// Building room events the way a federating server builds them (docs/events.md, "Order for a new
// event"), inside the storage write job that stores them: prev_events are the room's forward
// extremities, depth one more than theirs, auth_events the room version's auth events selection
// taken from the current state; the event is checked with the version's authorization rules
// against that state, hashed (content hash), signed with the server's key, given its reference
// hash as event ID, and appended with its state, membership and extremity changes
// (WriteTxn::append_event). Because all of it runs in one write job, and write jobs are
// serialised (SQLite's single writer; PostgreSQL's SERIALIZABLE jobs, retried on conflict),
// concurrent sends to one room always build on the event committed before them.
//
// Thread-safety: immutable after construction; append() runs on a storage thread (the hashing
// and signing never run on network threads).

#include <cstdint>
#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/events/json_signing.hpp"
#include "myelin/events/room_version.hpp"
#include "myelin/events/signing_key.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// The largest event, as canonical JSON of the whole signed PDU (spec "Size limits").
inline constexpr std::size_t kMaxEventBytes = 65536;
// The largest type, state_key, sender or room_id.
inline constexpr std::size_t kMaxEventFieldBytes = 255;

// What a client asks to add to a room.
struct EventDraft {
    std::string sender;
    std::string type;
    std::optional<std::string> state_key;
    boost::json::object content;
    // m.room.redaction only: the event to redact (top level in room version 10, in content in
    // 11, as the version wants).
    std::string redacts;
};

// An event that was appended.
struct AppendedEvent {
    std::string event_id;
    std::int64_t stream_ordering = 0;
};

class EventBuilder {
public:
    EventBuilder(std::string server_name, const events::SigningKey& key, const Clock& clock);

    // Builds, authorizes, signs and appends `draft` to `room` in the caller's write job (see the
    // file comment). A redaction is applied to its target (the stored JSON becomes the redacted
    // form) when the sender sent the target or has the redact level. Errors: 403 M_FORBIDDEN
    // (the authorization rules refused, naming the rule; or a redaction of someone else's event
    // below the redact level), 404 M_NOT_FOUND (a redaction's target is not in the room), 400
    // M_BAD_JSON (content that is not canonical JSON: floats, big integers, bad UTF-8), 400
    // M_INVALID_PARAM (type or state_key over 255 bytes), 413 M_TOO_LARGE (the signed event
    // over 65,536 bytes), storage errors. On an error nothing was written by it.
    [[nodiscard]] Result<AppendedEvent> append(storage::WriteTxn& txn,
                                               const storage::RoomRecord& room,
                                               const EventDraft& draft) const;

    // The server's own public key, for checks of our own signatures.
    [[nodiscard]] const events::VerifyKeys& verify_keys() const noexcept { return verify_keys_; }
    [[nodiscard]] const std::string& server_name() const noexcept { return server_name_; }
    [[nodiscard]] const Clock& clock() const noexcept { return clock_; }

private:
    std::string server_name_;
    const events::SigningKey& key_;
    const Clock& clock_;
    events::VerifyKeys verify_keys_;
};

}  // namespace myelin::service
