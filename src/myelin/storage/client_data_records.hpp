#pragma once

// The rows of what clients store right after login (issue #8 §1): account data, filters,
// profiles, end-to-end keys and to-device messages. Plain values shared by every storage backend
// and the services above them; JSON travels as its serialized text, never parsed here.

#include <cstdint>
#include <optional>
#include <string>

namespace myelin::storage {

// One account-data entry. `room_id` is empty for global account data. `stream_pos` is the
// user's account-data stream position of the entry's last write (per user, strictly increasing
// with every write, in commit order): what a /sync reads "changes since". The type
// "m.push_rules" (global) holds the user's push-rule changes (service/push_rules.hpp); clients
// cannot write it through the account-data endpoints.
struct AccountDataRecord {
    std::string user_id;
    std::string room_id;
    std::string type;
    std::string content;  // a JSON object, serialized
    std::int64_t stream_pos = 0;
};

struct ProfileRecord {
    std::string user_id;
    std::optional<std::string> displayname;
    std::optional<std::string> avatar_url;
};

// A device's signed identity keys (the DeviceKeys object of keys.yaml), as uploaded.
struct DeviceKeysRecord {
    std::string user_id;
    std::string device_id;
    std::string key_json;
};

// A one-time or fallback key: `key_id` without the algorithm ("AAAAHg"), `key_json` the value
// as uploaded (a string or a signed-key object, serialized).
struct E2eKeyRecord {
    std::string user_id;
    std::string device_id;
    std::string algorithm;
    std::string key_id;
    std::string key_json;
};

// A to-device message waiting for its recipient device. `stream_pos` is the recipient user's
// to-device stream position (strictly increasing per user in commit order).
struct ToDeviceRecord {
    std::int64_t stream_pos = 0;
    std::string recipient_user;
    std::string recipient_device;
    std::string sender;
    std::string type;
    std::string content;  // a JSON object, serialized
};

// One of a user's cross-signing keys (cross_signing_key.yaml, migration 10): `key_type` is
// "master", "self_signing" or "user_signing", `public_key` the unpadded Base64 ed25519 key (its
// key ID without "ed25519:"), `key_json` the CrossSigningKey object as uploaded, serialized.
struct CrossSigningKeyRecord {
    std::string user_id;
    std::string key_type;
    std::string public_key;
    std::string key_json;
};

// A signature uploaded through /keys/signatures/upload (migration 10), merged into the signed
// key when /keys/query returns it: `target_key` is the signed key's device ID (device keys) or
// public key (a master key); `signer_key_id` is "ed25519:<device ID or public key>".
struct KeySignatureRecord {
    std::string target_user;
    std::string target_key;
    std::string signer_user;
    std::string signer_key_id;
    std::string signature;  // unpadded Base64
};

// A change of a user's device list or keys at a global device-list stream position.
struct DeviceListChangeRecord {
    std::int64_t stream_pos = 0;
    std::string user_id;
    std::string device_id;
};

}  // namespace myelin::storage
