#include "myelin/events/authorization.hpp"

#include <array>
#include <optional>
#include <set>
#include <string>

#include "myelin/events/base64.hpp"
#include "myelin/events/canonical_json.hpp"
#include "myelin/events/event_fields.hpp"
#include "myelin/events/event_signing.hpp"
#include "myelin/events/identifiers.hpp"
#include "myelin/events/power_levels.hpp"

namespace myelin::events {

namespace json = boost::json;

namespace {

using D = AuthDecision;

std::string str(std::string_view s) { return std::string(s); }

// Rule 1: m.room.create.
D authorize_create(const json::object& event, const RoomVersion& version) {
    const json::value* prev = event.if_contains("prev_events");
    if (prev != nullptr && (!prev->is_array() || !prev->get_array().empty())) {
        return D::refuse("1.1", "m.room.create must not have prev_events");
    }
    const std::string_view room_server = server_name_of(string_field(event, "room_id"));
    if (room_server.empty() || room_server != server_name_of(string_field(event, "sender"))) {
        return D::refuse("1.2", "the room ID's domain must be the sender's");
    }
    const json::object& content = content_of(event);
    if (const json::value* v = content.if_contains("room_version")) {
        // Recognised = supported here. A create event of another version than the one being
        // authorized describes another room: refused too (absent would mean version 1).
        if (!v->is_string() || find_room_version(v->get_string()) == nullptr) {
            return D::refuse("1.3", "unsupported room_version");
        }
        if (v->get_string() != version.id) {
            return D::refuse("1.3", "room_version does not match the room version");
        }
    }
    if (version.creator_in_content && !content.contains("creator")) {
        return D::refuse("1.4", "content.creator is required in this room version");
    }
    return D::allow("1.5");
}

// Rule 4.4.1: an invite carrying a third-party invite.
D authorize_third_party_invite(const json::object& event, const AuthState& state,
                               std::string_view target) {
    if (state.membership(target) == "ban") return D::refuse("4.4.1.1", "the target is banned");
    const json::value* tpi = content_of(event).if_contains("third_party_invite");
    const json::value* signed_value =
        tpi != nullptr && tpi->is_object() ? tpi->get_object().if_contains("signed") : nullptr;
    if (signed_value == nullptr || !signed_value->is_object()) {
        return D::refuse("4.4.1.2", "third_party_invite has no signed object");
    }
    const json::object& signed_object = signed_value->get_object();
    const json::value* mxid = signed_object.if_contains("mxid");
    const json::value* token = signed_object.if_contains("token");
    if (mxid == nullptr || !mxid->is_string() || token == nullptr || !token->is_string()) {
        return D::refuse("4.4.1.3", "signed needs mxid and token");
    }
    if (mxid->get_string() != target) {
        return D::refuse("4.4.1.4", "signed.mxid does not match the state_key");
    }
    const StateEvent* invite = state.find("m.room.third_party_invite", token->get_string());
    if (invite == nullptr) {
        return D::refuse("4.4.1.5", "no m.room.third_party_invite for the token");
    }
    if (string_field(invite->pdu, "sender") != string_field(event, "sender")) {
        return D::refuse("4.4.1.6", "the sender did not send the third-party invite");
    }
    std::vector<std::string_view> encoded_keys;
    const json::object& invite_content = content_of(invite->pdu);
    if (const std::string_view key = string_field(invite_content, "public_key"); !key.empty()) {
        encoded_keys.push_back(key);
    }
    if (const json::value* list = invite_content.if_contains("public_keys");
        list != nullptr && list->is_array()) {
        for (const json::value& entry : list->get_array()) {
            if (!entry.is_object()) continue;
            const std::string_view key = string_field(entry.get_object(), "public_key");
            if (!key.empty()) encoded_keys.push_back(key);
        }
    }
    for (const std::string_view encoded : encoded_keys) {
        const auto bytes = decode_base64_any(encoded);
        if (!bytes || bytes->size() != kEd25519PublicKeySize) continue;
        PublicKey key{};
        std::copy(bytes->begin(), bytes->end(), key.begin());
        if (has_signature_by_key(signed_object, key)) return D::allow("4.4.1.7");
    }
    return D::refuse("4.4.1.8", "no signature in signed matches the invite's public keys");
}

// Rule 4: m.room.member.
D authorize_member(const json::object& event, const RoomVersion& version, const AuthState& state,
                   const VerifyKeys& keys) {
    const json::object& content = content_of(event);
    const json::value* membership_value = content.if_contains("membership");
    if (!has_state_key(event) || membership_value == nullptr || !membership_value->is_string()) {
        return D::refuse("4.1", "m.room.member needs a state_key and content.membership");
    }
    const std::string_view membership = membership_value->get_string();
    const std::string_view sender = string_field(event, "sender");
    const std::string_view target = string_field(event, "state_key");

    const json::value* via_value = content.if_contains("join_authorised_via_users_server");
    if (via_value != nullptr) {
        if (!via_value->is_string() || !is_valid_user_id(via_value->get_string())) {
            return D::refuse("4.2.1", "join_authorised_via_users_server is not a user ID");
        }
        const std::string_view via_server = server_name_of(via_value->get_string());
        if (!verify_event_signature(event, version, via_server, keys)) {
            return D::refuse("4.2.1",
                             "not signed by the server of join_authorised_via_users_server");
        }
    }

    const PowerLevels levels(state, version);
    const std::string_view sender_membership = state.membership(sender);
    const std::string_view target_membership = state.membership(target);

    if (membership == "join") {
        const StateEvent* create = state.create();
        const json::value* prev = event.if_contains("prev_events");
        if (create != nullptr && prev != nullptr && prev->is_array() &&
            prev->get_array().size() == 1 && prev->get_array()[0].is_string() &&
            prev->get_array()[0].get_string() == create->event_id &&
            target == room_creator(create->pdu, version)) {
            return D::allow("4.3.1");
        }
        if (sender != target) return D::refuse("4.3.2", "cannot join on behalf of another user");
        if (sender_membership == "ban") return D::refuse("4.3.3", "the sender is banned");
        const std::string_view rule = state.join_rule();
        if (rule == "invite" || rule == "knock") {
            if (target_membership == "invite" || target_membership == "join") {
                return D::allow("4.3.4");
            }
            return D::refuse("4.3.4", "the room needs an invite");
        }
        if (rule == "restricted" || rule == "knock_restricted") {
            if (target_membership == "invite" || target_membership == "join") {
                return D::allow("4.3.5.1");
            }
            if (via_value == nullptr) {
                return D::refuse("4.3.5.2",
                                 "a restricted join needs join_authorised_via_users_server");
            }
            const std::string_view via = via_value->get_string();
            // "A user with sufficient permission to invite": joined, and at the invite level.
            if (state.membership(via) != "join" || levels.user_level(via) < levels.invite()) {
                return D::refuse("4.3.5.2",
                                 "join_authorised_via_users_server cannot invite to this room");
            }
            return D::allow("4.3.5.3");
        }
        if (rule == "public") return D::allow("4.3.6");
        return D::refuse("4.3.7", "the join rule does not allow joining");
    }

    if (membership == "invite") {
        if (content.contains("third_party_invite")) {
            return authorize_third_party_invite(event, state, target);
        }
        if (sender_membership != "join") return D::refuse("4.4.2", "the sender is not joined");
        if (target_membership == "join" || target_membership == "ban") {
            return D::refuse("4.4.3", "the target is joined or banned");
        }
        if (levels.user_level(sender) >= levels.invite()) return D::allow("4.4.4");
        return D::refuse("4.4.5", "the sender's power level is below the invite level");
    }

    if (membership == "leave") {
        if (sender == target) {
            if (sender_membership == "invite" || sender_membership == "join" ||
                sender_membership == "knock") {
                return D::allow("4.5.1");
            }
            return D::refuse("4.5.1", "cannot leave from membership " + str(sender_membership));
        }
        if (sender_membership != "join") return D::refuse("4.5.2", "the sender is not joined");
        const std::int64_t sender_level = levels.user_level(sender);
        if (target_membership == "ban" && sender_level < levels.ban()) {
            return D::refuse("4.5.3", "unbanning needs the ban level");
        }
        if (sender_level >= levels.kick() && levels.user_level(target) < sender_level) {
            return D::allow("4.5.4");
        }
        return D::refuse("4.5.5",
                         "kicking needs the kick level and a higher level than the target");
    }

    if (membership == "ban") {
        if (sender_membership != "join") return D::refuse("4.6.1", "the sender is not joined");
        const std::int64_t sender_level = levels.user_level(sender);
        if (sender_level >= levels.ban() && levels.user_level(target) < sender_level) {
            return D::allow("4.6.2");
        }
        return D::refuse("4.6.3", "banning needs the ban level and a higher level than the target");
    }

    if (membership == "knock") {
        const std::string_view rule = state.join_rule();
        if (rule != "knock" && rule != "knock_restricted") {
            return D::refuse("4.7.1", "the join rule does not allow knocking");
        }
        if (sender != target) return D::refuse("4.7.2", "cannot knock on behalf of another user");
        if (sender_membership != "ban" && sender_membership != "invite" &&
            sender_membership != "join") {
            return D::allow("4.7.3");
        }
        return D::refuse("4.7.4", "cannot knock when banned, invited or joined");
    }

    return D::refuse("4.8", "unknown membership " + str(membership));
}

constexpr std::array<std::string_view, 7> kNamedLevels{
    "users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"};

std::optional<std::int64_t> level_at(const json::object& object, std::string_view key) {
    const json::value* v = object.if_contains(key);
    if (v == nullptr) return std::nullopt;
    return v->is_int64() ? v->get_int64() : static_cast<std::int64_t>(v->get_uint64());
}

bool is_object_of_integers(const json::value& v) {
    if (!v.is_object()) return false;
    for (const auto& kv : v.get_object()) {
        if (!is_canonical_integer(kv.value())) return false;
    }
    return true;
}

// Rule 9: m.room.power_levels.
D authorize_power_levels(const json::object& event, const RoomVersion& version,
                         const AuthState& state) {
    const json::object& content = content_of(event);
    for (const std::string_view key : kNamedLevels) {
        const json::value* v = content.if_contains(key);
        if (v != nullptr && !is_canonical_integer(*v)) {
            return D::refuse("9.1", str(key) + " must be an integer");
        }
    }
    for (const std::string_view key : {"events", "notifications"}) {
        const json::value* v = content.if_contains(key);
        if (v != nullptr && !is_object_of_integers(*v)) {
            return D::refuse("9.2", str(key) + " must be an object of integers");
        }
    }
    if (const json::value* users = content.if_contains("users")) {
        if (!is_object_of_integers(*users)) {
            return D::refuse("9.3", "users must be an object of integers");
        }
        for (const auto& kv : users->get_object()) {
            if (!is_valid_user_id(kv.key())) {
                return D::refuse("9.3", "users has a key that is not a user ID");
            }
        }
    }
    const StateEvent* current_event = state.power_levels();
    if (current_event == nullptr) return D::allow("9.4");

    const json::object& current = content_of(current_event->pdu);
    const std::string_view sender = string_field(event, "sender");
    const std::int64_t level = PowerLevels(state, version).user_level(sender);

    for (const std::string_view key : kNamedLevels) {
        const auto old_value = level_at(current, key);
        const auto new_value = level_at(content, key);
        if (old_value == new_value) continue;
        if (old_value && *old_value > level) {
            return D::refuse("9.5.1", "cannot change " + str(key) + " from above your level");
        }
        if (new_value && *new_value > level) {
            return D::refuse("9.5.2", "cannot set " + str(key) + " above your level");
        }
    }
    for (const std::string_view map : {"events", "notifications"}) {
        const json::object& old_map = object_field(current, map);
        const json::object& new_map = object_field(content, map);
        std::set<std::string_view> keys;
        for (const auto& kv : old_map) keys.insert(kv.key());
        for (const auto& kv : new_map) keys.insert(kv.key());
        for (const std::string_view key : keys) {
            const auto old_value = level_at(old_map, key);
            const auto new_value = level_at(new_map, key);
            if (old_value == new_value) continue;
            if (old_value && *old_value > level) {
                return D::refuse(
                    "9.6", "cannot change " + str(map) + "." + str(key) + " from above your level");
            }
            if (new_value && *new_value > level) {
                return D::refuse("9.7",
                                 "cannot set " + str(map) + "." + str(key) + " above your level");
            }
        }
    }
    const json::object& old_users = object_field(current, "users");
    const json::object& new_users = object_field(content, "users");
    std::set<std::string_view> users;
    for (const auto& kv : old_users) users.insert(kv.key());
    for (const auto& kv : new_users) users.insert(kv.key());
    for (const std::string_view user : users) {
        const auto old_value = level_at(old_users, user);
        const auto new_value = level_at(new_users, user);
        if (old_value == new_value) continue;
        if (user != sender && old_value && *old_value >= level) {
            return D::refuse("9.8", "cannot change the level of a user at or above your own");
        }
        if (new_value && *new_value > level) {
            return D::refuse("9.9", "cannot give a user a level above your own");
        }
    }
    return D::allow("9.10");
}

}  // namespace

AuthDecision authorize(const json::object& event, const RoomVersion& version,
                       const AuthState& state, const VerifyKeys& keys) {
    const std::string_view type = string_field(event, "type");
    const std::string_view sender = string_field(event, "sender");
    if (type == "m.room.create") return authorize_create(event, version);

    const StateEvent* create = state.create();
    if (create == nullptr) return D::refuse("2.4", "no m.room.create in the room state");

    const json::value* federate = content_of(create->pdu).if_contains("m.federate");
    if (federate != nullptr && federate->is_bool() && !federate->get_bool() &&
        server_name_of(sender) != server_name_of(string_field(create->pdu, "sender"))) {
        return D::refuse("3", "the room does not federate");
    }

    if (type == "m.room.member") return authorize_member(event, version, state, keys);

    if (state.membership(sender) != "join") return D::refuse("5", "the sender is not joined");

    const PowerLevels levels(state, version);
    const std::int64_t sender_level = levels.user_level(sender);
    if (type == "m.room.third_party_invite") {
        if (sender_level >= levels.invite()) return D::allow("6.1");
        return D::refuse("6.1", "the sender's power level is below the invite level");
    }

    if (levels.event_level(type, has_state_key(event)) > sender_level) {
        return D::refuse("7", "the sender's power level is too low to send " + str(type));
    }

    const std::string_view state_key = string_field(event, "state_key");
    if (has_state_key(event) && state_key.starts_with('@') && state_key != sender) {
        return D::refuse("8", "state keys starting with @ belong to that user");
    }

    if (type == "m.room.power_levels") return authorize_power_levels(event, version, state);

    return D::allow("10");
}

bool may_apply_redaction(const json::object& redaction, const json::object& original,
                         const RoomVersion& version, const AuthState& state) {
    const std::string_view sender = string_field(redaction, "sender");
    const PowerLevels levels(state, version);
    if (levels.user_level(sender) >= levels.redact()) return true;
    const std::string_view server = server_name_of(sender);
    return !server.empty() && server == server_name_of(string_field(original, "sender"));
}

std::string_view redacted_event_id(const json::object& redaction, const RoomVersion& version) {
    if (version.redacts_in_content) return string_field(content_of(redaction), "redacts");
    return string_field(redaction, "redacts");
}

}  // namespace myelin::events
