#include "myelin/events/auth_state.hpp"

#include <algorithm>
#include <set>

#include "myelin/events/event_fields.hpp"

namespace myelin::events {

namespace json = boost::json;

namespace {

std::string map_key(std::string_view type, std::string_view state_key) {
    std::string key;
    key.reserve(type.size() + 1 + state_key.size());
    key.append(type);
    key += '\0';
    key.append(state_key);
    return key;
}

}  // namespace

void AuthState::put(std::string event_id, json::object pdu) {
    if (!has_state_key(pdu)) return;
    const json::value* type = pdu.if_contains("type");
    if (type == nullptr || !type->is_string()) return;
    std::string key = map_key(type->get_string(), string_field(pdu, "state_key"));
    events_[std::move(key)] = StateEvent{std::move(event_id), std::move(pdu)};
}

const StateEvent* AuthState::find(std::string_view type, std::string_view state_key) const {
    const auto it = events_.find(map_key(type, state_key));
    return it == events_.end() ? nullptr : &it->second;
}

std::string_view AuthState::membership(std::string_view user_id) const {
    const StateEvent* m = member(user_id);
    if (m == nullptr) return "leave";
    const std::string_view membership = string_field(content_of(m->pdu), "membership");
    return membership.empty() ? std::string_view("leave") : membership;
}

std::string_view AuthState::join_rule() const {
    const StateEvent* rules = join_rules();
    if (rules == nullptr) return "invite";
    return string_field(content_of(rules->pdu), "join_rule");
}

std::vector<StateKey> auth_event_keys(const json::object& event, const RoomVersion& version) {
    (void)version;  // the same selection for every supported version (all have restricted rooms)
    const std::string_view type = string_field(event, "type");
    std::vector<StateKey> keys;
    if (type == "m.room.create") return keys;
    keys.push_back({"m.room.create", ""});
    keys.push_back({"m.room.power_levels", ""});
    keys.push_back({"m.room.member", std::string(string_field(event, "sender"))});
    if (type == "m.room.member" && has_state_key(event)) {
        const json::object& content = content_of(event);
        const std::string_view membership = string_field(content, "membership");
        keys.push_back({"m.room.member", std::string(string_field(event, "state_key"))});
        if (membership == "join" || membership == "invite" || membership == "knock") {
            // The selection names join and invite; knock is authorized against the join rule
            // too (rule 4.7.1), so its auth events must carry it (as other servers do).
            keys.push_back({"m.room.join_rules", ""});
        }
        if (membership == "invite") {
            const json::object& invite = object_field(content, "third_party_invite");
            const std::string_view token = string_field(object_field(invite, "signed"), "token");
            if (!token.empty()) keys.push_back({"m.room.third_party_invite", std::string(token)});
        }
        const std::string_view via = string_field(content, "join_authorised_via_users_server");
        if (!via.empty()) keys.push_back({"m.room.member", std::string(via)});
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
}

AuthDecision auth_state_from_auth_events(const json::object& event, const RoomVersion& version,
                                         std::vector<AuthEvent> auth_events, AuthState& out) {
    const std::vector<StateKey> allowed = auth_event_keys(event, version);
    std::set<StateKey> seen;
    for (AuthEvent& entry : auth_events) {
        StateKey key{std::string(string_field(entry.pdu, "type")),
                     std::string(string_field(entry.pdu, "state_key"))};
        if (!has_state_key(entry.pdu) || !seen.insert(key).second) {
            if (has_state_key(entry.pdu)) {
                return AuthDecision::refuse(
                    "2.1", "duplicate auth event for " + key.type + " " + key.state_key);
            }
            return AuthDecision::refuse("2.2",
                                        "auth event " + entry.event_id + " is not a state event");
        }
        if (!std::binary_search(allowed.begin(), allowed.end(), key)) {
            return AuthDecision::refuse("2.2", "auth event " + key.type + " " + key.state_key +
                                                   " is not one the event needs");
        }
        if (entry.rejected) {
            return AuthDecision::refuse("2.3", "auth event " + entry.event_id + " was rejected");
        }
    }
    if (seen.count(StateKey{"m.room.create", ""}) == 0) {
        return AuthDecision::refuse("2.4", "no m.room.create among the auth events");
    }
    for (AuthEvent& entry : auth_events) out.put(std::move(entry.event_id), std::move(entry.pdu));
    return AuthDecision::allow("2");
}

}  // namespace myelin::events
