#include "myelin/service/e2e_key_service.hpp"

#include <functional>
#include <memory>
#include <set>
#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {

using Counts = std::vector<std::pair<std::string, std::int64_t>>;

namespace {

// The user and everyone sharing a joined room with them, into `out`.
Result<void> add_room_sharers(storage::ReadTxn& txn, const std::string& user_id,
                              std::vector<std::string>& out) {
    std::set<std::string> users{user_id};
    auto memberships = txn.user_memberships(user_id);
    if (!memberships) return memberships.error();
    for (const auto& m : *memberships) {
        if (m.membership != "join") continue;
        auto members = txn.room_members(m.room_id);
        if (!members) return members.error();
        for (auto& member : *members) {
            if (member.membership == "join") users.insert(std::move(member.user_id));
        }
    }
    out.assign(users.begin(), users.end());
    return {};
}

}  // namespace

boost::asio::awaitable<Result<Counts>> E2eKeyService::upload(KeyUpload upload) {
    auto wake = std::make_shared<std::vector<std::string>>();
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
    return storage::write<Counts>(db_, std::move(job), std::move(after_commit));
}

boost::asio::awaitable<Result<std::map<std::string, std::vector<QueriedDevice>>>>
E2eKeyService::query(std::map<std::string, std::vector<std::string>> users) {
    using Out = std::map<std::string, std::vector<QueriedDevice>>;
    auto job = [users = std::move(users)](storage::ReadTxn& txn) -> Result<Out> {
        Out out;
        for (const auto& [user, devices] : users) {
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
            auto& list = out[user];
            for (auto& k : keys) {
                QueriedDevice q{k.device_id, std::move(k.key_json), std::nullopt};
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
