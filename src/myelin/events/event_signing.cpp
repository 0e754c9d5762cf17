#include "myelin/events/event_signing.hpp"

#include "myelin/events/event_hashing.hpp"
#include "myelin/events/redaction.hpp"

namespace myelin::events {

namespace json = boost::json;

Result<void> hash_and_sign_event(json::object& event, const RoomVersion& version,
                                 std::string_view server_name, const SigningKey& key) {
    json::object hashed = event;
    if (auto r = add_content_hash(hashed); !r) return r.error();
    json::object redacted = redact(hashed, version);
    if (auto r = sign_json(redacted, server_name, key); !r) return r.error();
    hashed["signatures"] = redacted.at("signatures");
    event = std::move(hashed);
    return {};
}

Result<void> verify_event_signature(const json::object& event, const RoomVersion& version,
                                    std::string_view server_name, const VerifyKeys& keys) {
    return verify_json_signature(redact(event, version), server_name, keys);
}

}  // namespace myelin::events
