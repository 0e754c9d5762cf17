#include "myelin/service/e2e_key_service.hpp"

#include <functional>
#include <memory>
#include <set>
#include <utility>

#include <boost/json.hpp>

#include "myelin/service/room_sharers.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

using Counts = std::vector<std::pair<std::string, std::int64_t>>;

namespace {

// True when two serialized DeviceKeys objects are the same keys (signatures and unsigned
// aside).
bool same_signed_keys(const std::string& a, const std::string& b) {
    boost::system::error_code ec_a;
    boost::system::error_code ec_b;
    auto va = boost::json::parse(a, ec_a);
    auto vb = boost::json::parse(b, ec_b);
    if (ec_a || ec_b || !va.is_object() || !vb.is_object()) return false;
    va.as_object().erase("signatures");
    va.as_object().erase("unsigned");
    vb.as_object().erase("signatures");
    vb.as_object().erase("unsigned");
    return va == vb;
}

}  // namespace

boost::asio::awaitable<Result<Counts>> E2eKeyService::upload(KeyUpload upload) {
    auto wake = std::make_shared<std::vector<std::string>>();
    // Only new device keys change the device list; one-time key top-ups take no queue.
    storage::SharedCounters counters = 0;
    if (upload.device_keys) counters = storage::kDeviceListsCounter;
    auto job = [upload = std::move(upload), wake](storage::WriteTxn& txn) -> Result<Counts> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        const auto& user = upload.user_id;
        const auto& device = upload.device_id;
        if (upload.device_keys) {
            auto current = txn.list_device_keys(user, std::string_view(device));
            if (!current) return current.error();
            const bool changed =
                current->empty() || current->front().key_json != *upload.device_keys;
            if (changed) {
                if (!current->empty() &&
                    !same_signed_keys(current->front().key_json, *upload.device_keys)) {
                    // Signatures uploaded for the old keys do not sign the new ones.
                    if (auto r = txn.delete_key_signatures(user, device); !r) return r.error();
                }
                if (auto r = txn.upsert_device_keys({user, device, *upload.device_keys}); !r) {
                    return r.error();
                }
                if (auto r = txn.record_device_list_change(user, device); !r) return r.error();
                if (auto r = add_room_sharers(txn, user, *wake); !r) return r.error();
            }
        }
        for (auto key : upload.one_time) {
            key.user_id = user;
            key.device_id = device;
            if (auto r = txn.insert_one_time_key(key); !r) return r.error();
        }
        for (auto key : upload.fallback) {
            key.user_id = user;
            key.device_id = device;
            if (auto r = txn.upsert_fallback_key(key); !r) return r.error();
        }
        return txn.count_one_time_keys(user, device);
    };
    std::function<void()> after_commit;
    if (notifier_ != nullptr) {
        after_commit = [notifier = notifier_, wake] {
            if (!wake->empty()) notifier->notify(*wake);
        };
    }
    return storage::write<Counts>(db_, std::move(job), std::move(after_commit), counters);
}

namespace {

// The uploaded signatures of one user's keys that `requester` may see (made by the user or by
// the requester), by target key.
using VisibleSignatures = std::map<std::string, std::vector<storage::KeySignatureRecord>>;

Result<VisibleSignatures> visible_signatures(storage::ReadTxn& txn, const std::string& user,
                                             const std::string& requester) {
    auto all = txn.list_key_signatures(user);
    if (!all) return all.error();
    VisibleSignatures out;
    for (auto& s : *all) {
        if (s.signer_user != user && s.signer_user != requester) continue;
        auto target = s.target_key;
        out[std::move(target)].push_back(std::move(s));
    }
    return out;
}

// `key_json` with the signatures of `target_key` merged into its `signatures` (unchanged when
// there are none, or when the stored text is not an object).
std::string with_signatures(std::string key_json, const VisibleSignatures& signatures,
                            const std::string& target_key) {
    auto found = signatures.find(target_key);
    if (found == signatures.end()) return key_json;
    boost::system::error_code ec;
    auto value = boost::json::parse(key_json, ec);
    if (ec || !value.is_object()) return key_json;
    auto& sigs = value.as_object()["signatures"];
    if (!sigs.is_object()) sigs = boost::json::object{};
    for (const auto& s : found->second) {
        auto& of_signer = sigs.as_object()[s.signer_user];
        if (!of_signer.is_object()) of_signer = boost::json::object{};
        of_signer.as_object()[s.signer_key_id] = s.signature;
    }
    return boost::json::serialize(value);
}

}  // namespace

boost::asio::awaitable<Result<KeyQueryResult>> E2eKeyService::query(
    std::string requester, std::map<std::string, std::vector<std::string>> users) {
    using Out = KeyQueryResult;
    auto job = [requester = std::move(requester),
                users = std::move(users)](storage::ReadTxn& txn) -> Result<Out> {
        Out out;
        for (const auto& [user, devices] : users) {
            auto signatures = visible_signatures(txn, user, requester);
            if (!signatures) return signatures.error();
            auto cross_signing = txn.list_cross_signing_keys(user);
            if (!cross_signing) return cross_signing.error();
            for (auto& k : *cross_signing) {
                if (k.key_type == "master") {
                    out.master_keys[user] =
                        with_signatures(std::move(k.key_json), *signatures, k.public_key);
                } else if (k.key_type == "self_signing") {
                    out.self_signing_keys[user] = std::move(k.key_json);
                } else if (k.key_type == "user_signing" && user == requester) {
                    out.user_signing_keys[user] = std::move(k.key_json);
                }
            }
            std::vector<storage::DeviceKeysRecord> keys;
            if (devices.empty()) {
                auto all = txn.list_device_keys(user, std::nullopt);
                if (!all) return all.error();
                keys = std::move(*all);
            } else {
                for (const auto& device : devices) {
                    auto one = txn.list_device_keys(user, std::string_view(device));
                    if (!one) return one.error();
                    for (auto& k : *one) keys.push_back(std::move(k));
                }
            }
            if (keys.empty()) continue;
            auto device_rows = txn.list_devices(user);
            if (!device_rows) return device_rows.error();
            auto& list = out.devices[user];
            for (auto& k : keys) {
                QueriedDevice q{k.device_id,
                                with_signatures(std::move(k.key_json), *signatures, k.device_id),
                                std::nullopt};
                for (const auto& d : *device_rows) {
                    if (d.device_id == q.device_id) q.display_name = d.display_name;
                }
                list.push_back(std::move(q));
            }
        }
        return out;
    };
    return storage::read<Out>(db_, std::move(job));
}

boost::asio::awaitable<Result<ClaimedKeys>> E2eKeyService::claim(KeyClaims claims) {
    auto job = [claims = std::move(claims)](storage::WriteTxn& txn) -> Result<ClaimedKeys> {
        ClaimedKeys out;
        for (const auto& [user, devices] : claims) {
            for (const auto& [device, algorithm] : devices) {
                auto key = txn.claim_one_time_key(user, device, algorithm);
                if (!key) return key.error();
                if (!*key) {
                    key = txn.claim_fallback_key(user, device, algorithm);
                    if (!key) return key.error();
                }
                if (!*key) continue;
                out[user][device] = {(*key)->algorithm + ":" + (*key)->key_id,
                                     std::move((*key)->key_json)};
            }
        }
        return out;
    };
    return storage::write<ClaimedKeys>(db_, std::move(job));
}

boost::asio::awaitable<Result<std::pair<Counts, std::vector<std::string>>>> E2eKeyService::counts(
    std::string user_id, std::string device_id) {
    using Out = std::pair<Counts, std::vector<std::string>>;
    auto job = [user_id = std::move(user_id),
                device_id = std::move(device_id)](storage::ReadTxn& txn) -> Result<Out> {
        auto counts = txn.count_one_time_keys(user_id, device_id);
        if (!counts) return counts.error();
        auto fallback = txn.unused_fallback_key_algorithms(user_id, device_id);
        if (!fallback) return fallback.error();
        return Out{std::move(*counts), std::move(*fallback)};
    };
    return storage::read<Out>(db_, std::move(job));
}

}  // namespace myelin::service
