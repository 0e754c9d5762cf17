#pragma once

// Signing JSON objects (spec appendix "Signing Details", "Checking for a Signature"): the
// signature covers the canonical JSON of the object without its `signatures` and `unsigned`
// members, and is stored as unpadded Base64 under signatures[<server name>][<key ID>].
// Pure functions, thread-safe.

#include <map>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/events/signing_key.hpp"

namespace myelin::events {

// The bytes a signature covers: canonical JSON of `object` without `signatures` and `unsigned`.
// Fails (400 M_BAD_JSON) when the rest is not canonical JSON.
[[nodiscard]] Result<std::string> signing_bytes(const boost::json::object& object);

// Adds `key`'s signature for `server_name` to `object` (other signatures are kept, a previous
// one under the same server and key ID is replaced). Fails (400 M_BAD_JSON), leaving `object`
// unchanged, when it is not canonical JSON or when its `signatures` member is not an object of
// objects.
[[nodiscard]] Result<void> sign_json(boost::json::object& object, std::string_view server_name,
                                     const SigningKey& key);

// Public keys of servers, by server name and key ID ("ed25519:abc"); what "Checking for a
// signature" calls verification keys. Filled by the caller (our own key; later the key cache).
class VerifyKeys {
public:
    void add(std::string server_name, std::string key_id, const PublicKey& key);
    // The key, or nullptr.
    [[nodiscard]] const PublicKey* find(std::string_view server_name,
                                        std::string_view key_id) const;

private:
    std::map<std::string, std::map<std::string, PublicKey, std::less<>>, std::less<>> keys_;
};

// Checks that `server_name` signed `object` ("Checking for a Signature"): the signatures entry
// for the server must exist and hold at least one ed25519 signature by a key in `keys`, and
// every such signature must verify. Fails with 403 M_FORBIDDEN naming what is missing or wrong
// (no entry, no known key, bad Base64, bad signature), or 400 M_BAD_JSON when the object is not
// canonical JSON.
[[nodiscard]] Result<void> verify_json_signature(const boost::json::object& object,
                                                 std::string_view server_name,
                                                 const VerifyKeys& keys);

// Checks the signature of `object` by `public_key` alone under any ed25519 key ID of any server
// listed in its signatures: for third-party invites, whose keys come from the room state rather
// than from a server. True when at least one such signature verifies.
[[nodiscard]] bool has_signature_by_key(const boost::json::object& object,
                                        const PublicKey& public_key);

}  // namespace myelin::events
