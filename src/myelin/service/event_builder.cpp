#include "myelin/service/event_builder.hpp"

#include <algorithm>
#include <utility>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include "myelin/events/auth_state.hpp"
#include "myelin/events/authorization.hpp"
#include "myelin/events/canonical_json.hpp"
#include "myelin/events/event_fields.hpp"
#include "myelin/events/event_hashing.hpp"
#include "myelin/events/event_signing.hpp"
#include "myelin/events/power_levels.hpp"
#include "myelin/events/redaction.hpp"

namespace myelin::service {

namespace {

// A stored event's JSON as an object (500 if storage holds something else).
Result<boost::json::object> parse_stored(const storage::EventRecord& e) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(e.json, ec);
    if (ec || !v.is_object()) {
        return errors::internal(fmt::format("stored event {} is not a JSON object", e.event_id));
    }
    return std::move(v.as_object());
}

}  // namespace

EventBuilder::EventBuilder(std::string server_name, const events::SigningKey& key,
                           const Clock& clock)
    : server_name_(std::move(server_name)), key_(key), clock_(clock) {
    verify_keys_.add(server_name_, key_.key_id(), key_.public_key());
}

Result<AppendedEvent> EventBuilder::append(storage::WriteTxn& txn, const storage::RoomRecord& room,
                                           const EventDraft& draft) const {
    const events::RoomVersion* version = events::find_room_version(room.room_version);
    if (version == nullptr) {
        return errors::internal(
            fmt::format("room {} has the unsupported version {}", room.room_id, room.room_version));
    }
    if (draft.type.size() > kMaxEventFieldBytes ||
        (draft.state_key && draft.state_key->size() > kMaxEventFieldBytes)) {
        return errors::invalid_param("The event type and state_key may have at most 255 bytes");
    }
    auto content = events::normalise_canonical_json(boost::json::value(draft.content));
    if (!content) return content.error();
    const bool is_redaction = draft.type == "m.room.redaction";

    boost::json::object pdu;
    pdu["room_id"] = room.room_id;
    pdu["sender"] = draft.sender;
    pdu["type"] = draft.type;
    if (draft.state_key) pdu["state_key"] = *draft.state_key;
    pdu["content"] = std::move(*content);
    if (is_redaction) {
        if (version->redacts_in_content) {
            pdu["content"].as_object()["redacts"] = draft.redacts;
        } else {
            pdu["redacts"] = draft.redacts;
        }
    }
    pdu["origin_server_ts"] = clock_.now_ms();

    // prev_events: the forward extremities (one, since this server serialises each room).
    auto extremities = txn.forward_extremities(room.room_id);
    if (!extremities) return extremities.error();
    std::int64_t depth = 0;
    boost::json::array prev;
    std::vector<std::string> prev_ids;
    for (const auto& x : *extremities) {
        depth = std::max(depth, x.depth);
        prev.emplace_back(x.event_id);
        prev_ids.push_back(x.event_id);
    }
    depth = std::min(depth + 1, events::kMaxSafeInteger);
    pdu["prev_events"] = std::move(prev);
    pdu["depth"] = depth;

    // auth_events: the selection, from the current state.
    events::AuthState state;
    boost::json::array auth_ids;
    for (const auto& key : events::auth_event_keys(pdu, *version)) {
        auto found = txn.state_event(room.room_id, key.type, key.state_key);
        if (!found) return found.error();
        if (!*found) continue;
        auto parsed = parse_stored(**found);
        if (!parsed) return parsed.error();
        state.put((*found)->event_id, std::move(*parsed));
        auth_ids.emplace_back((*found)->event_id);
    }
    pdu["auth_events"] = std::move(auth_ids);

    const events::AuthDecision decision = events::authorize(pdu, *version, state, verify_keys_);
    if (!decision.allowed) {
        return errors::forbidden(decision.reason.empty()
                                     ? fmt::format("Not allowed (rule {})", decision.rule)
                                     : decision.reason);
    }

    // A redaction: the target must be in this room, and be the sender's own event unless the
    // sender has the redact level ("Handling redactions" leaves this to the server, which knows
    // its users).
    std::optional<storage::EventRecord> target;
    boost::json::object target_pdu;
    if (is_redaction) {
        auto found = txn.find_event(draft.redacts);
        if (!found) return found.error();
        if (!*found || (*found)->room_id != room.room_id) {
            return errors::not_found("Event not found in this room");
        }
        target = std::move(**found);
        auto parsed = parse_stored(*target);
        if (!parsed) return parsed.error();
        target_pdu = std::move(*parsed);
        const events::PowerLevels levels(state, *version);
        if (target->sender != draft.sender && levels.user_level(draft.sender) < levels.redact()) {
            return errors::forbidden("You may only redact your own events");
        }
    }

    if (auto signed_ok = events::hash_and_sign_event(pdu, *version, server_name_, key_);
        !signed_ok) {
        return signed_ok.error();
    }
    auto event_id = events::compute_event_id(pdu, *version);
    if (!event_id) return event_id.error();
    auto json = events::encode_canonical_json(pdu);
    if (!json) return json.error();
    if (json->size() > kMaxEventBytes) {
        return errors::too_large(fmt::format("The event is {} bytes; at most {} are allowed",
                                             json->size(), kMaxEventBytes));
    }

    storage::NewEvent row;
    row.event_id = *event_id;
    row.room_id = room.room_id;
    row.depth = depth;
    row.type = draft.type;
    row.state_key = draft.state_key;
    row.sender = draft.sender;
    row.origin_server_ts = pdu["origin_server_ts"].as_int64();
    row.json = std::move(*json);
    if (draft.type == "m.room.member" && draft.state_key) {
        row.membership = std::string(events::string_field(events::content_of(pdu), "membership"));
    }
    row.prev_events = std::move(prev_ids);
    auto position = txn.append_event(row);
    if (!position) return position.error();

    if (target && target->redacted_by.empty() &&
        events::may_apply_redaction(pdu, target_pdu, *version, state)) {
        auto redacted = events::encode_canonical_json(events::redact(target_pdu, *version));
        if (!redacted) return redacted.error();
        auto applied = txn.redact_event(target->event_id, *redacted, *event_id);
        if (!applied) return applied.error();
    }
    return AppendedEvent{std::move(*event_id), *position};
}

}  // namespace myelin::service
