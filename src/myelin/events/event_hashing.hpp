#pragma once

// Hashes of events (server-server API "Signing Events"):
//   - the content hash covers the whole event except `unsigned`, `signatures` and `hashes`; it
//     is stored as hashes.sha256 (unpadded Base64) and lets a receiver tell a redacted copy from
//     the original;
//   - the reference hash covers the redacted event without `signatures`, `unsigned` and
//     `age_ts`; in room versions 4 and later it is the event ID: "$" + URL-safe unpadded Base64.
// Pure functions, thread-safe. CPU work (canonical JSON + SHA-256): not for network threads
// with large events in bulk.

#include <array>
#include <cstdint>
#include <string>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/events/room_version.hpp"

namespace myelin::events {

using Sha256 = std::array<std::uint8_t, 32>;

// SHA-256 of canonical JSON of `event` without unsigned, signatures and hashes. Fails
// (400 M_BAD_JSON) when the event is not canonical JSON.
[[nodiscard]] Result<Sha256> content_hash(const boost::json::object& event);

// Sets event.hashes to {"sha256": <content hash>}, replacing any previous hashes.
[[nodiscard]] Result<void> add_content_hash(boost::json::object& event);

// True when event.hashes.sha256 is present and equals the content hash (a false answer means
// the event was redacted, or altered, on its way).
[[nodiscard]] bool content_hash_matches(const boost::json::object& event);

// SHA-256 of canonical JSON of the redacted event without signatures, unsigned and age_ts.
[[nodiscard]] Result<Sha256> reference_hash(const boost::json::object& event,
                                            const RoomVersion& version);

// "$" + URL-safe unpadded Base64 of the reference hash: the event ID of a room version 4+ event.
[[nodiscard]] Result<std::string> compute_event_id(const boost::json::object& event,
                                                   const RoomVersion& version);

}  // namespace myelin::events
