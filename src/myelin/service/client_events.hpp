#pragma once

// Stored events in the client-server API's format (ClientEvent, spec
// definitions/client_event.yaml): content, event_id, origin_server_ts, room_id, sender,
// state_key (state events), type, `redacts` at the top level for redactions (room version 11
// keeps it in content too, as clients of both versions read it there), and unsigned:
// redacted_because (the redaction, itself in client format) for redacted events. Hashes,
// signatures, prev/auth events and depth stay server-side. (unsigned.transaction_id for the
// sending device's own events is left to /sync, which knows the device.)
//
// Pure functions, thread-safe.

#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/storage/room_records.hpp"

namespace myelin::service {

// The stored event's PDU as a JSON object. Error (500) when storage holds something else.
[[nodiscard]] Result<boost::json::object> stored_pdu(const storage::EventRecord& event);

// The client format of `event`. `redacted_because`: the redaction's client format when the event
// was redacted (nullptr: omitted). Error (500) when the stored JSON is not an object.
[[nodiscard]] Result<boost::json::object> client_event(
    const storage::EventRecord& event, const boost::json::object* redacted_because = nullptr);

}  // namespace myelin::service
