#include "myelin/events/redaction.hpp"

#include <array>
#include <initializer_list>
#include <string_view>

namespace myelin::events {

namespace json = boost::json;

namespace {

constexpr std::array<std::string_view, 12> kTopLevelKeptV11{
    "event_id", "type",       "room_id", "sender",      "state_key",   "content",
    "hashes",   "signatures", "depth",   "prev_events", "auth_events", "origin_server_ts"};
// Version 9 (used by room version 10) also keeps these.
constexpr std::array<std::string_view, 3> kTopLevelKeptOnlyV9{"prev_state", "origin", "membership"};

void keep(const json::object& from, json::object& to,
          std::initializer_list<std::string_view> keys) {
    for (const std::string_view key : keys) {
        if (const json::value* v = from.if_contains(key)) to[key] = *v;
    }
}

json::object redact_content(std::string_view type, const json::object& content,
                            const RoomVersion& version) {
    const bool v11 = version.redaction == RedactionRules::v11;
    json::object kept;
    if (type == "m.room.member") {
        keep(content, kept, {"membership", "join_authorised_via_users_server"});
        if (v11) {
            const json::value* invite = content.if_contains("third_party_invite");
            if (invite != nullptr && invite->is_object()) {
                json::object only_signed;
                keep(invite->get_object(), only_signed, {"signed"});
                kept["third_party_invite"] = std::move(only_signed);
            }
        }
    } else if (type == "m.room.create") {
        if (v11) return content;
        keep(content, kept, {"creator"});
    } else if (type == "m.room.join_rules") {
        keep(content, kept, {"join_rule", "allow"});
    } else if (type == "m.room.power_levels") {
        keep(content, kept,
             {"ban", "events", "events_default", "kick", "redact", "state_default", "users",
              "users_default"});
        if (v11) keep(content, kept, {"invite"});
    } else if (type == "m.room.history_visibility") {
        keep(content, kept, {"history_visibility"});
    } else if (type == "m.room.redaction" && v11) {
        keep(content, kept, {"redacts"});
    }
    return kept;
}

}  // namespace

json::object redact(const json::object& event, const RoomVersion& version) {
    json::object out;
    for (const std::string_view key : kTopLevelKeptV11) {
        if (const json::value* v = event.if_contains(key)) out[key] = *v;
    }
    if (version.redaction == RedactionRules::v9) {
        for (const std::string_view key : kTopLevelKeptOnlyV9) {
            if (const json::value* v = event.if_contains(key)) out[key] = *v;
        }
    }
    std::string_view type;
    if (const json::value* t = event.if_contains("type"); t != nullptr && t->is_string()) {
        type = t->get_string();
    }
    const json::value* content = event.if_contains("content");
    out["content"] = content != nullptr && content->is_object()
                         ? redact_content(type, content->get_object(), version)
                         : json::object{};
    return out;
}

}  // namespace myelin::events
