#pragma once

// The redaction algorithm (spec room versions, "Redactions"): what survives of an event when it
// is redacted, and what reference hashes and event signatures cover. Room version 10 uses the v9
// rules, room version 11 its own (top-level origin, membership and prev_state no longer kept;
// all of m.room.create's content kept; m.room.redaction keeps content.redacts;
// m.room.power_levels keeps invite; m.room.member keeps third_party_invite.signed).
// Pure functions, thread-safe.

#include <boost/json/object.hpp>

#include "myelin/events/room_version.hpp"

namespace myelin::events {

// The redacted copy of `event`: top-level keys outside the version's list are dropped, and
// content keeps only the keys its type allows. A content that is not an object becomes {}.
[[nodiscard]] boost::json::object redact(const boost::json::object& event,
                                         const RoomVersion& version);

}  // namespace myelin::events
