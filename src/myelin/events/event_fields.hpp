#pragma once

// Tolerant accessors for PDU fields: a missing member or one of the wrong type reads as empty,
// so rules can be written over events whose format was checked elsewhere (event_format.hpp)
// without crashing on ones that were not. Pure functions, thread-safe.

#include <string_view>

#include <boost/json/object.hpp>

namespace myelin::events {

// object[key] when it is a string, otherwise "".
[[nodiscard]] inline std::string_view string_field(const boost::json::object& object,
                                                   std::string_view key) noexcept {
    const boost::json::value* v = object.if_contains(key);
    return v != nullptr && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

// object[key] when it is an object, otherwise an empty object.
[[nodiscard]] inline const boost::json::object& object_field(const boost::json::object& object,
                                                             std::string_view key) noexcept {
    static const boost::json::object empty;
    const boost::json::value* v = object.if_contains(key);
    return v != nullptr && v->is_object() ? v->get_object() : empty;
}

// event["content"] when it is an object, otherwise an empty object.
[[nodiscard]] inline const boost::json::object& content_of(
    const boost::json::object& event) noexcept {
    return object_field(event, "content");
}

// True when the event has a state_key member that is a string.
[[nodiscard]] inline bool has_state_key(const boost::json::object& event) noexcept {
    const boost::json::value* v = event.if_contains("state_key");
    return v != nullptr && v->is_string();
}

}  // namespace myelin::events
