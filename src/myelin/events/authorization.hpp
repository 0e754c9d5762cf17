#pragma once

// The authorization rules of room versions 10 and 11 (spec rooms/v10 and rooms/v11,
// "Authorization rules"), as a pure function of the event and the state it is checked against.
// Every decision names the rule that made it, numbered as in the spec:
//   1     m.room.create (1.1 prev_events, 1.2 room ID domain, 1.3 room_version, 1.4 creator in v10)
//   2     auth_events (auth_state_from_auth_events in auth_state.hpp), 2.4 no create in state
//   3     m.federate
//   4     m.room.member: 4.1 form, 4.2 join_authorised_via_users_server signature, 4.3 join,
//         4.4 invite (4.4.1 third-party), 4.5 leave, 4.6 ban, 4.7 knock, 4.8 unknown
//   5     sender not joined
//   6     m.room.third_party_invite
//   7     required power level
//   8     state_key starting with '@'
//   9     m.room.power_levels (9.1 to 9.3 integer form, 9.4 to 9.9 changes)
//   10    otherwise allowed
// m.room.redaction events pass through rules 5 and 7 like any event; whether a redaction is
// applied is decided later by may_apply_redaction().
//
// "Events must be signed by the server denoted by the sender property" is a check on receipt
// (verify_event_signature in event_signing.hpp), not part of this function.
//
// Pure functions, thread-safe; CPU only (ed25519 verification for rules 4.2 and 4.4.1.7).

#include <boost/json/object.hpp>

#include "myelin/events/auth_decision.hpp"
#include "myelin/events/auth_state.hpp"
#include "myelin/events/json_signing.hpp"
#include "myelin/events/room_version.hpp"

namespace myelin::events {

// Authorizes `event` (a PDU) against `state` under `version`'s rules. `keys` holds the public
// keys of servers whose signatures rule 4.2 may need (the server of a
// join_authorised_via_users_server user). Never throws on malformed events: a missing or
// mistyped field reads as absent and the rules refuse accordingly.
[[nodiscard]] AuthDecision authorize(const boost::json::object& event, const RoomVersion& version,
                                     const AuthState& state, const VerifyKeys& keys);

// "Handling redactions": a redaction that passed the rules is applied to `original` when its
// sender's level is at least the redact level, or when both senders share a server name.
// `state` is the room state at the redaction (only its power levels and create are read).
[[nodiscard]] bool may_apply_redaction(const boost::json::object& redaction,
                                       const boost::json::object& original,
                                       const RoomVersion& version, const AuthState& state);

// The event ID a redaction redacts: top-level `redacts` in room version 10, content.redacts in
// 11; empty when absent.
[[nodiscard]] std::string_view redacted_event_id(const boost::json::object& redaction,
                                                 const RoomVersion& version);

}  // namespace myelin::events
