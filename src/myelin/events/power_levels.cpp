#include "myelin/events/power_levels.hpp"

#include "myelin/events/canonical_json.hpp"
#include "myelin/events/event_fields.hpp"

namespace myelin::events {

namespace json = boost::json;

namespace {

// The integer at object[key], or `fallback` when absent or not an integer (stored power levels
// passed rule 9, so only a missing key takes the fallback in practice).
std::int64_t integer_or(const json::object& object, std::string_view key, std::int64_t fallback) {
    const json::value* v = object.if_contains(key);
    if (v == nullptr || !is_canonical_integer(*v)) return fallback;
    return v->is_int64() ? v->get_int64() : static_cast<std::int64_t>(v->get_uint64());
}

}  // namespace

std::string_view room_creator(const json::object& create_event, const RoomVersion& version) {
    if (version.creator_in_content) return string_field(content_of(create_event), "creator");
    return string_field(create_event, "sender");
}

PowerLevels::PowerLevels(const AuthState& state, const RoomVersion& version) {
    if (const StateEvent* pl = state.power_levels()) content_ = &content_of(pl->pdu);
    if (const StateEvent* create = state.create()) creator_ = room_creator(create->pdu, version);
}

std::int64_t PowerLevels::user_level(std::string_view user_id) const {
    if (content_ == nullptr) return !creator_.empty() && user_id == creator_ ? 100 : 0;
    const json::object& users = object_field(*content_, "users");
    if (users.contains(user_id)) return integer_or(users, user_id, 0);
    return integer_or(*content_, "users_default", 0);
}

std::int64_t PowerLevels::event_level(std::string_view type, bool is_state) const {
    if (content_ != nullptr) {
        const json::object& events = object_field(*content_, "events");
        if (events.contains(type)) return integer_or(events, type, 0);
    }
    return is_state ? named("state_default", 50) : named("events_default", 0);
}

std::int64_t PowerLevels::named(std::string_view key, std::int64_t fallback) const {
    return content_ == nullptr ? fallback : integer_or(*content_, key, fallback);
}

}  // namespace myelin::events
