#pragma once

// Hashing and signing whole events (server-server API "Signing Events"): the content hash is
// added first, then the *redacted* event is signed, and the signature copied back, so that a
// signature still checks on a redacted copy. Pure functions, thread-safe.

#include <string_view>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/events/json_signing.hpp"
#include "myelin/events/room_version.hpp"
#include "myelin/events/signing_key.hpp"

namespace myelin::events {

// Adds hashes.sha256 and `server_name`'s signature (by `key`) to `event`. Signatures already on
// the event from other servers are kept. Fails (400 M_BAD_JSON) when the event is not
// canonical JSON; `event` is then unchanged.
[[nodiscard]] Result<void> hash_and_sign_event(boost::json::object& event,
                                               const RoomVersion& version,
                                               std::string_view server_name, const SigningKey& key);

// Checks `server_name`'s signature on the redacted form of `event` (it holds for the full event
// and for a redacted copy alike). Errors as verify_json_signature.
[[nodiscard]] Result<void> verify_event_signature(const boost::json::object& event,
                                                  const RoomVersion& version,
                                                  std::string_view server_name,
                                                  const VerifyKeys& keys);

}  // namespace myelin::events
