#include "myelin/events/event_hashing.hpp"

#include <sodium.h>

#include "myelin/core/sodium_init.hpp"
#include "myelin/events/base64.hpp"
#include "myelin/events/canonical_json.hpp"
#include "myelin/events/redaction.hpp"

namespace myelin::events {

namespace json = boost::json;

namespace {

Sha256 sha256(std::string_view bytes) {
    ensure_sodium();
    Sha256 out{};
    crypto_hash_sha256(out.data(), reinterpret_cast<const unsigned char*>(bytes.data()),
                       bytes.size());
    return out;
}

}  // namespace

Result<Sha256> content_hash(const json::object& event) {
    json::object copy = event;
    copy.erase("unsigned");
    copy.erase("signatures");
    copy.erase("hashes");
    auto bytes = encode_canonical_json(copy);
    if (!bytes) return bytes.error();
    return sha256(*bytes);
}

Result<void> add_content_hash(json::object& event) {
    auto hash = content_hash(event);
    if (!hash) return hash.error();
    event["hashes"] = json::object{{"sha256", encode_base64(*hash)}};
    return {};
}

bool content_hash_matches(const json::object& event) {
    const json::value* hashes = event.if_contains("hashes");
    if (hashes == nullptr || !hashes->is_object()) return false;
    const json::value* claimed = hashes->get_object().if_contains("sha256");
    if (claimed == nullptr || !claimed->is_string()) return false;
    auto decoded = decode_base64(claimed->get_string());
    auto actual = content_hash(event);
    return decoded && actual && decoded->size() == actual->size() &&
           std::equal(decoded->begin(), decoded->end(), actual->begin());
}

Result<Sha256> reference_hash(const json::object& event, const RoomVersion& version) {
    json::object redacted = redact(event, version);
    redacted.erase("signatures");
    redacted.erase("unsigned");
    redacted.erase("age_ts");
    auto bytes = encode_canonical_json(redacted);
    if (!bytes) return bytes.error();
    return sha256(*bytes);
}

Result<std::string> compute_event_id(const json::object& event, const RoomVersion& version) {
    auto hash = reference_hash(event, version);
    if (!hash) return hash.error();
    return "$" + encode_base64_url(*hash);
}

}  // namespace myelin::events
