#include "myelin/events/json_signing.hpp"

#include "myelin/events/base64.hpp"
#include "myelin/events/canonical_json.hpp"

namespace myelin::events {

namespace json = boost::json;

Result<std::string> signing_bytes(const json::object& object) {
    json::object copy = object;
    copy.erase("signatures");
    copy.erase("unsigned");
    return encode_canonical_json(copy);
}

Result<void> sign_json(json::object& object, std::string_view server_name, const SigningKey& key) {
    if (const json::value* sigs = object.if_contains("signatures")) {
        if (!sigs->is_object()) return errors::bad_json("signatures must be an object");
        if (const json::value* mine = sigs->get_object().if_contains(server_name)) {
            if (!mine->is_object()) return errors::bad_json("signatures entry must be an object");
        }
    }
    auto bytes = signing_bytes(object);
    if (!bytes) return bytes.error();
    const Signature sig = key.sign(*bytes);
    json::value& sigs = object["signatures"];
    if (!sigs.is_object()) sigs = json::object{};
    json::value& mine = sigs.get_object()[server_name];
    if (!mine.is_object()) mine = json::object{};
    mine.get_object()[key.key_id()] = encode_base64(sig);
    return {};
}

void VerifyKeys::add(std::string server_name, std::string key_id, const PublicKey& key) {
    keys_[std::move(server_name)][std::move(key_id)] = key;
}

const PublicKey* VerifyKeys::find(std::string_view server_name, std::string_view key_id) const {
    const auto server = keys_.find(server_name);
    if (server == keys_.end()) return nullptr;
    const auto key = server->second.find(key_id);
    return key == server->second.end() ? nullptr : &key->second;
}

Result<void> verify_json_signature(const json::object& object, std::string_view server_name,
                                   const VerifyKeys& keys) {
    const std::string server(server_name);
    const json::value* sigs = object.if_contains("signatures");
    const json::value* entry = sigs != nullptr && sigs->is_object()
                                   ? sigs->get_object().if_contains(server_name)
                                   : nullptr;
    if (entry == nullptr || !entry->is_object()) {
        return errors::forbidden("No signature from " + server);
    }
    auto bytes = signing_bytes(object);
    if (!bytes) return bytes.error();
    int verified = 0;
    for (const auto& kv : entry->get_object()) {
        if (!kv.key().starts_with("ed25519:")) continue;  // algorithms we do not understand
        const PublicKey* key = keys.find(server_name, kv.key());
        if (key == nullptr) continue;
        if (!kv.value().is_string()) {
            return errors::forbidden("Signature " + std::string(kv.key()) + " of " + server +
                                     " is not a string");
        }
        auto sig = decode_base64(kv.value().get_string());
        if (!sig) {
            return errors::forbidden("Signature " + std::string(kv.key()) + " of " + server +
                                     " is not Base64");
        }
        if (!verify_ed25519(*key, *bytes, *sig)) {
            return errors::forbidden("Signature " + std::string(kv.key()) + " of " + server +
                                     " does not verify");
        }
        ++verified;
    }
    if (verified == 0) return errors::forbidden("No signature from " + server + " by a known key");
    return {};
}

bool has_signature_by_key(const json::object& object, const PublicKey& public_key) {
    const json::value* sigs = object.if_contains("signatures");
    if (sigs == nullptr || !sigs->is_object()) return false;
    auto bytes = signing_bytes(object);
    if (!bytes) return false;
    for (const auto& server : sigs->get_object()) {
        if (!server.value().is_object()) continue;
        for (const auto& kv : server.value().get_object()) {
            if (!kv.key().starts_with("ed25519:") || !kv.value().is_string()) continue;
            auto sig = decode_base64(kv.value().get_string());
            if (sig && verify_ed25519(public_key, *bytes, *sig)) return true;
        }
    }
    return false;
}

}  // namespace myelin::events
