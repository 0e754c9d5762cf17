#pragma once

// Cross-signing (cross_signing.yaml; end_to_end_encryption.md "Cross-signing"): a user's master,
// self-signing and user-signing keys (POST /keys/device_signing/upload) and the signatures made
// with them (POST /keys/signatures/upload), stored and relayed. Unlike the rest of the key
// endpoints the server checks signatures here, as the spec asks: the self-signing and
// user-signing keys must be signed by the master key; an uploaded signature must verify with
// the key it names, over the key it signs as stored. The ed25519 checks run inside the write
// job, on a storage thread. Every stored change appends a device-list change for the user whose
// key changed, and wakes (after the commit) the long-polls of the users who see it in
// device_lists.changed. Thread-safety: all methods may be called concurrently.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

inline constexpr std::string_view kMasterKey = "master";
inline constexpr std::string_view kSelfSigningKey = "self_signing";
inline constexpr std::string_view kUserSigningKey = "user_signing";

// Checks the shape of a CrossSigningKey object (cross_signing_key.yaml) for `usage`: user_id
// must be `user_id`, usage a list of strings naming `usage`, keys exactly one
// "ed25519:<key>" entry whose value is <key>, an unpadded Base64 ed25519 public key (32 bytes),
// signatures (optional) an object of objects. Returns <key>. Errors: 400 M_BAD_JSON (shape),
// 400 M_INVALID_PARAM (another user's key). Pure, thread-safe.
Result<std::string> check_cross_signing_key(const boost::json::object& key,
                                            std::string_view user_id, std::string_view usage);

// What POST /keys/device_signing/upload carries, each key checked by check_cross_signing_key.
struct SigningKeyUpload {
    std::string user_id;
    std::optional<boost::json::object> master;
    std::optional<boost::json::object> self_signing;
    std::optional<boost::json::object> user_signing;
};

enum class SigningKeyUploadOutcome {
    kStored,              // the keys were stored
    kUnchanged,           // every key sent equals the stored one: nothing to do
    kNeedsAuthentication  // a stored master key would change: UIA first, nothing was stored
};

// Signatures to upload: user ID -> key ID (device ID or a master key's public key) -> the
// signed object.
using SignatureUploads = std::map<std::string, std::map<std::string, boost::json::value>>;
// Per-key failures of a signature upload: user ID -> key ID -> {errcode, error}.
using SignatureFailures = std::map<std::string, std::map<std::string, boost::json::object>>;

class CrossSigningService {
public:
    // `db` must outlive the service; `server_name` names the local users.
    CrossSigningService(storage::Database& db, std::string server_name)
        : db_(db), server_name_(std::move(server_name)) {}

    // Checks and stores the keys in one write job. A self-signing or user-signing key must be
    // signed by the master key sent with it, or else by the stored one. Replacing a stored key
    // (when the user has a master key) needs `authenticated` (UIA passed): without it the
    // outcome is kNeedsAuthentication and nothing changes. A first upload, or one that only
    // repeats the stored keys, needs none. Errors: 400 M_MISSING_PARAM (no master key to check
    // against), 400 M_INVALID_SIGNATURE (not signed by the master key), 403 M_FORBIDDEN (a
    // public key equal to one of the user's device IDs), 503.
    boost::asio::awaitable<Result<SigningKeyUploadOutcome>> upload_keys(SigningKeyUpload upload,
                                                                        bool authenticated);

    // Checks each signature of `uploads` made by `user_id` and stores the good ones, in one
    // write job: of the caller's device keys by their self-signing key, of their master key by
    // one of their devices, of another local user's master key by their user-signing key. The
    // signed object must be the stored key (signatures and unsigned aside). Returns the
    // failures per key: M_INVALID_SIGNATURE (bad or missing signature, or an object that is not
    // the stored key), M_NOT_FOUND (no such key, or no signing key to check with), M_BAD_JSON
    // (not an object), M_UNRECOGNIZED (users of other servers: no federation yet). Errors: 503.
    boost::asio::awaitable<Result<SignatureFailures>> upload_signatures(std::string user_id,
                                                                        SignatureUploads uploads);

    // Wakes the long-polls of who sees a stored change (see the file comment). nullptr (the
    // default): nobody is woken. Set before serving; `notifier` must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    storage::Database& db_;
    const std::string server_name_;
    UserNotifier* notifier_ = nullptr;
};

}  // namespace myelin::service
