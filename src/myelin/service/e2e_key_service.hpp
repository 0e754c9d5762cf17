#pragma once

// End-to-end encryption keys (keys.yaml), stored and relayed only: the server never looks
// inside a key beyond checking the shapes the handlers check. Device keys are kept per device,
// one-time keys until claimed (each claimed once), fallback keys until replaced. A change of a
// device's identity keys appends a device-list change (ReadTxn::device_list_changes_since) for
// a later /sync and /keys/changes. Thread-safety: all methods may be called concurrently;
// storage work runs on the database's threads.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// What POST /keys/upload carries, checked by the handler.
struct KeyUpload {
    std::string user_id;
    std::string device_id;
    std::optional<std::string> device_keys;       // serialized DeviceKeys object
    std::vector<storage::E2eKeyRecord> one_time;  // user_id/device_id filled in by the service
    std::vector<storage::E2eKeyRecord> fallback;  // at most one per algorithm
};

// One device's keys for /keys/query: the stored DeviceKeys and the device's display name.
struct QueriedDevice {
    std::string device_id;
    std::string key_json;
    std::optional<std::string> display_name;
};

// What /keys/query answers for the users asked about: their device keys, and their master and
// self-signing keys (user ID -> serialized CrossSigningKey), and the requester's own
// user-signing key. Uploaded signatures (/keys/signatures/upload) are merged into the keys they
// sign: those by the key's owner, and those by the requester.
struct KeyQueryResult {
    std::map<std::string, std::vector<QueriedDevice>> devices;
    std::map<std::string, std::string> master_keys;
    std::map<std::string, std::string> self_signing_keys;
    std::map<std::string, std::string> user_signing_keys;
};

// A claim request: user -> device -> algorithm.
using KeyClaims = std::map<std::string, std::map<std::string, std::string>>;
// Claimed keys: user -> device -> ("algorithm:key_id", serialized key).
using ClaimedKeys =
    std::map<std::string, std::map<std::string, std::pair<std::string, std::string>>>;

class E2eKeyService {
public:
    // `db` must outlive the service.
    explicit E2eKeyService(storage::Database& db) : db_(db) {}

    // Stores the upload in one write job and returns the device's unclaimed one-time key
    // counts per algorithm afterwards. A one-time key ID the device already has is kept as it
    // was (a retried upload changes nothing). Errors: 503.
    boost::asio::awaitable<Result<std::vector<std::pair<std::string, std::int64_t>>>> upload(
        KeyUpload upload);

    // The stored device keys of each user (all devices when the list is empty), with the
    // devices' display names, and the users' cross-signing keys, as KeyQueryResult says, in one
    // snapshot, for `requester`. Users and devices without keys are left out. Errors: 503.
    boost::asio::awaitable<Result<KeyQueryResult>> query(
        std::string requester, std::map<std::string, std::vector<std::string>> users);

    // Claims one key per (user, device, algorithm) in one write job: a one-time key (removed),
    // else the fallback key (kept, marked used). Devices with neither are left out.
    // Errors: 503.
    boost::asio::awaitable<Result<ClaimedKeys>> claim(KeyClaims claims);

    // The device's unclaimed one-time key counts and unused fallback key algorithms (for a
    // /sync). Errors: 503.
    boost::asio::awaitable<Result<
        std::pair<std::vector<std::pair<std::string, std::int64_t>>, std::vector<std::string>>>>
    counts(std::string user_id, std::string device_id);

    // Wakes, after an upload that changed a device's keys, the long-polls (/sync) of the users
    // who see that change in device_lists.changed: the uploader and everyone sharing a joined
    // room with them. nullptr (the default): nobody is woken. Set before serving; `notifier`
    // must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    storage::Database& db_;
    UserNotifier* notifier_ = nullptr;
};

}  // namespace myelin::service
