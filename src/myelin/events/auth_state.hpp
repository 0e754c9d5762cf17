#pragma once

// The room state an event is authorized against (spec server-server API, "Auth events
// selection"): m.room.create, m.room.power_levels, the sender's and the target's m.room.member,
// m.room.join_rules, the m.room.third_party_invite named by a third-party invite, and the
// member event of the user named in join_authorised_via_users_server.
//
// For an event we build, the state comes from the room's current state through
// auth_event_keys(); for an event received over federation, from its auth_events through
// auth_state_from_auth_events(), which applies authorization rule 2.
//
// An AuthState owns copies of its events. Not synchronised: one thread at a time.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "myelin/events/auth_decision.hpp"
#include "myelin/events/room_version.hpp"

namespace myelin::events {

struct StateKey {
    std::string type;
    std::string state_key;
    friend bool operator==(const StateKey&, const StateKey&) = default;
    friend auto operator<=>(const StateKey&, const StateKey&) = default;
};

struct StateEvent {
    std::string event_id;
    boost::json::object pdu;
};

class AuthState {
public:
    // Adds or replaces the state event under its own (type, state_key); a PDU without a string
    // type or state_key is ignored.
    void put(std::string event_id, boost::json::object pdu);

    // The event at (type, state_key), or nullptr.
    [[nodiscard]] const StateEvent* find(std::string_view type, std::string_view state_key) const;
    [[nodiscard]] const StateEvent* create() const { return find("m.room.create", ""); }
    [[nodiscard]] const StateEvent* power_levels() const { return find("m.room.power_levels", ""); }
    [[nodiscard]] const StateEvent* join_rules() const { return find("m.room.join_rules", ""); }
    [[nodiscard]] const StateEvent* member(std::string_view user_id) const {
        return find("m.room.member", user_id);
    }

    // A user's current membership ("join", "invite", "leave", "ban", "knock"); "leave" when the
    // state has no member event for them (or one without a string membership).
    [[nodiscard]] std::string_view membership(std::string_view user_id) const;
    // The current join rule; "invite" when there is no m.room.join_rules event (as other
    // servers do; the spec leaves it open).
    [[nodiscard]] std::string_view join_rule() const;

    [[nodiscard]] std::size_t size() const noexcept { return events_.size(); }

private:
    std::map<std::string, StateEvent, std::less<>> events_;  // key: type '\0' state_key
};

// The (type, state_key) pairs whose current state events become `event`'s auth_events
// ("Auth events selection"). Empty for m.room.create.
[[nodiscard]] std::vector<StateKey> auth_event_keys(const boost::json::object& event,
                                                    const RoomVersion& version);

// One of an incoming event's auth_events, as the caller found it in storage.
struct AuthEvent {
    std::string event_id;
    boost::json::object pdu;
    bool rejected = false;  // rejected by the checks on receipt of a PDU
};

// Rule 2 ("Considering the event's auth_events"): fills `out` from `auth_events`, refusing
// duplicates of a (type, state_key) pair (2.1), entries the selection would not pick (2.2),
// rejected entries (2.3) and the absence of m.room.create (2.4).
[[nodiscard]] AuthDecision auth_state_from_auth_events(const boost::json::object& event,
                                                       const RoomVersion& version,
                                                       std::vector<AuthEvent> auth_events,
                                                       AuthState& out);

}  // namespace myelin::events
