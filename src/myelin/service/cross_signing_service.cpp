#include "myelin/service/cross_signing_service.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json.hpp>

#include "myelin/events/base64.hpp"
#include "myelin/events/json_signing.hpp"
#include "myelin/events/signing_key.hpp"
#include "myelin/service/room_sharers.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

namespace json = boost::json;

namespace {

Error invalid_signature(std::string message) {
    return errors::make(400, "M_INVALID_SIGNATURE", std::move(message));
}

// The ed25519 public key in unpadded Base64, or nullopt.
std::optional<events::PublicKey> decode_public_key(std::string_view text) {
    auto bytes = events::decode_base64(text);
    if (!bytes || bytes->size() != events::kEd25519PublicKeySize) return std::nullopt;
    events::PublicKey key{};
    std::copy(bytes->begin(), bytes->end(), key.begin());
    return key;
}

enum class SignatureCheck { kMissing, kBad, kGood };

// The signature signatures[signer][key_id] of `object`, checked with `key`. `signature` gets its
// text when it is there.
SignatureCheck check_signature(const json::object& object, std::string_view signer,
                               std::string_view key_id, const events::PublicKey& key,
                               std::string* signature = nullptr) {
    const auto* sigs = object.if_contains("signatures");
    if (sigs == nullptr || !sigs->is_object()) return SignatureCheck::kMissing;
    const auto* of_signer = sigs->get_object().if_contains(signer);
    if (of_signer == nullptr || !of_signer->is_object()) return SignatureCheck::kMissing;
    const auto* sig = of_signer->get_object().if_contains(key_id);
    if (sig == nullptr) return SignatureCheck::kMissing;
    if (!sig->is_string()) return SignatureCheck::kBad;
    auto bytes = events::signing_bytes(object);
    if (!bytes) return SignatureCheck::kBad;
    auto raw = events::decode_base64(sig->get_string());
    if (!raw || !events::verify_ed25519(key, *bytes, *raw)) return SignatureCheck::kBad;
    if (signature != nullptr) *signature = std::string(sig->get_string());
    return SignatureCheck::kGood;
}

// The stored JSON text parsed as an object (an empty one if it is not: never expected).
json::object parse_stored(const std::string& text) {
    boost::system::error_code ec;
    auto value = json::parse(text, ec);
    if (ec || !value.is_object()) return {};
    return std::move(value.as_object());
}

// True when `a` and `b` are the same key, their signatures and unsigned members aside.
bool same_signed_content(const json::object& a, const json::object& b) {
    auto ba = events::signing_bytes(a);
    auto bb = events::signing_bytes(b);
    return ba && bb && *ba == *bb;
}

const storage::CrossSigningKeyRecord* find_key(
    const std::vector<storage::CrossSigningKeyRecord>& keys, std::string_view type) {
    for (const auto& k : keys) {
        if (k.key_type == type) return &k;
    }
    return nullptr;
}

// One key of an upload with its public key.
struct UploadedKey {
    std::string_view type;
    const json::object* object = nullptr;
    std::string public_key;
};

}  // namespace

Result<std::string> check_cross_signing_key(const json::object& key, std::string_view user_id,
                                            std::string_view usage) {
    const std::string name(usage);
    const auto* user = key.if_contains("user_id");
    if (user == nullptr || !user->is_string()) return errors::bad_json(name + ": user_id missing");
    if (user->get_string() != user_id) {
        return errors::invalid_param(name + ": user_id must be the user making the request");
    }
    const auto* usages = key.if_contains("usage");
    if (usages == nullptr || !usages->is_array()) {
        return errors::bad_json(name + ": usage must be an array");
    }
    bool found = false;
    for (const auto& u : usages->get_array()) {
        if (!u.is_string()) return errors::bad_json(name + ": usage must hold strings");
        if (u.get_string() == usage) found = true;
    }
    if (!found) return errors::bad_json(name + ": usage must contain \"" + name + "\"");
    const auto* keys = key.if_contains("keys");
    if (keys == nullptr || !keys->is_object() || keys->get_object().size() != 1) {
        return errors::bad_json(name + ": keys must hold exactly one key");
    }
    const auto& [key_id, value] = *keys->get_object().begin();
    if (!key_id.starts_with("ed25519:") || !value.is_string() ||
        key_id.substr(8) != value.get_string()) {
        return errors::bad_json(name + ": keys must map ed25519:<key> to <key>");
    }
    if (!decode_public_key(value.get_string())) {
        return errors::bad_json(name + ": the key is not an unpadded Base64 ed25519 key");
    }
    if (const auto* sigs = key.if_contains("signatures"); sigs != nullptr) {
        if (!sigs->is_object()) return errors::bad_json(name + ": signatures must be an object");
        for (const auto& [signer, of_signer] : sigs->get_object()) {
            if (!of_signer.is_object()) {
                return errors::bad_json(name + ": signatures must map users to objects");
            }
        }
    }
    return std::string(value.get_string());
}

boost::asio::awaitable<Result<SigningKeyUploadOutcome>> CrossSigningService::upload_keys(
    SigningKeyUpload upload, bool authenticated) {
    using Outcome = SigningKeyUploadOutcome;
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [upload = std::move(upload), authenticated,
                wake](storage::WriteTxn& txn) -> Result<Outcome> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        const std::string& user = upload.user_id;
        std::vector<UploadedKey> sent;
        for (auto [type, object] : {std::pair{kMasterKey, &upload.master},
                                    std::pair{kSelfSigningKey, &upload.self_signing},
                                    std::pair{kUserSigningKey, &upload.user_signing}}) {
            if (!*object) continue;
            auto public_key = check_cross_signing_key(**object, user, type);
            if (!public_key) return public_key.error();
            sent.push_back({type, &**object, std::move(*public_key)});
        }
        auto stored = txn.list_cross_signing_keys(user);
        if (!stored) return stored.error();
        const auto* stored_master = find_key(*stored, kMasterKey);

        // The master key the other keys must be signed by: the one sent, else the stored one.
        std::string master_public;
        if (upload.master) {
            master_public = sent.front().public_key;
        } else if (stored_master != nullptr) {
            master_public = stored_master->public_key;
        }
        for (const auto& key : sent) {
            if (key.type == kMasterKey) continue;
            if (master_public.empty()) {
                return errors::missing_param("No master signing key to check the " +
                                             std::string(key.type) + " key against");
            }
            auto master = decode_public_key(master_public);
            if (!master || check_signature(*key.object, user, "ed25519:" + master_public,
                                           *master) != SignatureCheck::kGood) {
                return invalid_signature("The " + std::string(key.type) +
                                         " key is not signed by the master key");
            }
        }
        auto devices = txn.list_devices(user);
        if (!devices) return devices.error();
        for (const auto& key : sent) {
            for (const auto& d : *devices) {
                if (d.device_id == key.public_key) return errors::forbidden("Key ID in use");
            }
        }

        bool unchanged = true;
        for (const auto& key : sent) {
            const auto* old = find_key(*stored, key.type);
            if (old == nullptr || parse_stored(old->key_json) != *key.object) unchanged = false;
        }
        if (unchanged) return Outcome::kUnchanged;
        if (stored_master != nullptr && !authenticated) return Outcome::kNeedsAuthentication;

        for (const auto& key : sent) {
            storage::CrossSigningKeyRecord record{user, std::string(key.type), key.public_key,
                                                  json::serialize(*key.object)};
            if (auto r = txn.upsert_cross_signing_key(record); !r) return r.error();
        }
        if (auto r = txn.record_device_list_change(user, master_public); !r) return r.error();
        if (auto r = add_room_sharers(txn, user, *wake); !r) return r.error();
        return Outcome::kStored;
    };
    std::function<void()> after_commit;
    if (notifier_ != nullptr) {
        after_commit = [notifier = notifier_, wake] {
            if (!wake->empty()) notifier->notify(*wake);
        };
    }
    return storage::write<Outcome>(db_, std::move(job), std::move(after_commit),
                                   storage::kDeviceListsCounter);
}

namespace {

json::object failure(std::string_view errcode, std::string_view message) {
    return json::object{{"errcode", errcode}, {"error", message}};
}

// The signatures one signed object carries, checked against the caller's and the target's keys
// in one write job. A failure is an {errcode, error} object.
class SignatureChecker {
public:
    SignatureChecker(storage::WriteTxn& txn, std::string caller)
        : txn_(txn), caller_(std::move(caller)) {}

    Result<void> load() {
        auto keys = txn_.list_cross_signing_keys(caller_);
        if (!keys) return keys.error();
        caller_keys_ = std::move(*keys);
        return {};
    }

    // The signature records to store for (target_user, key_id, value), or a failure.
    Result<std::variant<std::vector<storage::KeySignatureRecord>, json::object>> check(
        const std::string& target_user, const std::string& key_id, const json::value& value) {
        using Out = std::variant<std::vector<storage::KeySignatureRecord>, json::object>;
        const auto* object = value.if_object();
        if (object == nullptr)
            return Out(failure("M_BAD_JSON", "The signed key must be an object"));
        if (target_user == caller_) {
            const auto* master = find_key(caller_keys_, kMasterKey);
            if (master != nullptr && master->public_key == key_id) {
                return check_own_master(*master, *object);
            }
            auto device = txn_.list_device_keys(caller_, std::string_view(key_id));
            if (!device) return device.error();
            if (device->empty()) return Out(failure("M_NOT_FOUND", "No such key"));
            return check_own_device(device->front(), *object);
        }
        auto keys = txn_.list_cross_signing_keys(target_user);
        if (!keys) return keys.error();
        const auto* master = find_key(*keys, kMasterKey);
        if (master == nullptr || master->public_key != key_id) {
            return Out(failure("M_NOT_FOUND", "No such master key"));
        }
        const auto* user_signing = find_key(caller_keys_, kUserSigningKey);
        if (user_signing == nullptr) {
            return Out(failure("M_NOT_FOUND", "No user-signing key uploaded"));
        }
        if (!same_signed_content(*object, parse_stored(master->key_json))) {
            return Out(failure("M_INVALID_SIGNATURE", "The key differs from the stored one"));
        }
        auto signer = signed_by(*object, *user_signing);
        if (!signer) return Out(failure("M_INVALID_SIGNATURE", "Invalid signature"));
        signer->target_user = target_user;
        signer->target_key = key_id;
        return Out(std::vector<storage::KeySignatureRecord>{std::move(*signer)});
    }

private:
    using Checked = std::variant<std::vector<storage::KeySignatureRecord>, json::object>;

    // The signature of `object` by the cross-signing `key` (signer: the caller), if it verifies.
    std::optional<storage::KeySignatureRecord> signed_by(
        const json::object& object, const storage::CrossSigningKeyRecord& key) {
        auto public_key = decode_public_key(key.public_key);
        if (!public_key) return std::nullopt;
        storage::KeySignatureRecord record;
        record.signer_user = caller_;
        record.signer_key_id = "ed25519:" + key.public_key;
        if (check_signature(object, caller_, record.signer_key_id, *public_key,
                            &record.signature) != SignatureCheck::kGood) {
            return std::nullopt;
        }
        return record;
    }

    // The caller's device keys, signed by their self-signing key.
    Result<Checked> check_own_device(const storage::DeviceKeysRecord& device,
                                     const json::object& object) {
        const auto* self_signing = find_key(caller_keys_, kSelfSigningKey);
        if (self_signing == nullptr) {
            return Checked(failure("M_NOT_FOUND", "No self-signing key uploaded"));
        }
        if (!same_signed_content(object, parse_stored(device.key_json))) {
            return Checked(failure("M_INVALID_SIGNATURE", "The keys differ from the stored ones"));
        }
        auto signer = signed_by(object, *self_signing);
        if (!signer) return Checked(failure("M_INVALID_SIGNATURE", "Invalid signature"));
        signer->target_user = caller_;
        signer->target_key = device.device_id;
        return Checked(std::vector<storage::KeySignatureRecord>{std::move(*signer)});
    }

    // The caller's master key, signed by one or more of their devices: every signature of the
    // caller other than the master key's own must be a device's and verify.
    Result<Checked> check_own_master(const storage::CrossSigningKeyRecord& master,
                                     const json::object& object) {
        if (!same_signed_content(object, parse_stored(master.key_json))) {
            return Checked(failure("M_INVALID_SIGNATURE", "The key differs from the stored one"));
        }
        std::vector<storage::KeySignatureRecord> out;
        const auto* sigs = object.if_contains("signatures");
        const auto* mine = sigs != nullptr && sigs->is_object()
                               ? sigs->get_object().if_contains(caller_)
                               : nullptr;
        if (mine != nullptr && mine->is_object()) {
            for (const auto& [signer_key_id, sig] : mine->get_object()) {
                if (!signer_key_id.starts_with("ed25519:")) continue;
                const std::string device_id(signer_key_id.substr(8));
                if (device_id == master.public_key) continue;  // its own signature
                auto device = txn_.list_device_keys(caller_, std::string_view(device_id));
                if (!device) return device.error();
                if (device->empty()) return Checked(failure("M_NOT_FOUND", "No such device"));
                auto device_keys = parse_stored(device->front().key_json);
                const auto* keys = device_keys.if_contains("keys");
                const auto* ed = keys != nullptr && keys->is_object()
                                     ? keys->get_object().if_contains(signer_key_id)
                                     : nullptr;
                auto public_key = ed != nullptr && ed->is_string()
                                      ? decode_public_key(ed->get_string())
                                      : std::nullopt;
                storage::KeySignatureRecord record{
                    caller_, master.public_key, caller_, std::string(signer_key_id), {}};
                if (!public_key || check_signature(object, caller_, signer_key_id, *public_key,
                                                   &record.signature) != SignatureCheck::kGood) {
                    return Checked(failure("M_INVALID_SIGNATURE", "Invalid signature"));
                }
                out.push_back(std::move(record));
            }
        }
        if (out.empty()) {
            return Checked(failure("M_INVALID_SIGNATURE", "No signature by one of your devices"));
        }
        return Checked(std::move(out));
    }

    storage::WriteTxn& txn_;
    const std::string caller_;
    std::vector<storage::CrossSigningKeyRecord> caller_keys_;
};

std::string_view server_of(std::string_view user_id) {
    auto colon = user_id.find(':');
    if (colon == std::string_view::npos) return {};
    return user_id.substr(colon + 1);
}

}  // namespace

boost::asio::awaitable<Result<SignatureFailures>> CrossSigningService::upload_signatures(
    std::string user_id, SignatureUploads uploads) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [user_id = std::move(user_id), uploads = std::move(uploads), wake,
                server = server_name_](storage::WriteTxn& txn) -> Result<SignatureFailures> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        SignatureFailures failures;
        SignatureChecker checker(txn, user_id);
        if (auto r = checker.load(); !r) return r.error();
        for (const auto& [target_user, keys] : uploads) {
            if (server_of(target_user) != server) {
                for (const auto& [key_id, value] : keys) {
                    failures[target_user][key_id] =
                        failure("M_UNRECOGNIZED", "Users of other servers are not supported yet");
                }
                continue;
            }
            bool stored = false;
            for (const auto& [key_id, value] : keys) {
                auto checked = checker.check(target_user, key_id, value);
                if (!checked) return checked.error();
                if (auto* f = std::get_if<json::object>(&*checked)) {
                    failures[target_user][key_id] = std::move(*f);
                    continue;
                }
                for (const auto& record :
                     std::get<std::vector<storage::KeySignatureRecord>>(*checked)) {
                    if (auto r = txn.upsert_key_signature(record); !r) return r.error();
                }
                if (auto r = txn.record_device_list_change(target_user, key_id); !r) {
                    return r.error();
                }
                stored = true;
            }
            if (stored) {
                if (auto r = add_room_sharers(txn, target_user, *wake); !r) return r.error();
            }
        }
        return failures;
    };
    std::function<void()> after_commit;
    if (notifier_ != nullptr) {
        after_commit = [notifier = notifier_, wake] {
            if (!wake->empty()) notifier->notify(*wake);
        };
    }
    return storage::write<SignatureFailures>(db_, std::move(job), std::move(after_commit),
                                             storage::kDeviceListsCounter);
}

}  // namespace myelin::service
