#pragma once

// The server-default push rules of the spec (client-server-api/modules/push.md, "Predefined
// Rules", v1.17: the legacy body-matching rules .m.rule.contains_display_name,
// .m.rule.contains_user_name and .m.rule.roomnotif are gone). Pure functions, thread-safe.

#include <string_view>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

namespace myelin::service {

// The default rules of `kind` ("override", "content", "room", "sender", "underride") for the
// user `user_id`, in priority order, as PushRule objects (rule_id, default: true, enabled,
// conditions / pattern, actions). Unknown kinds and kinds without defaults give [].
// .m.rule.master comes first among the overrides and, unlike the others, stays above every
// user-defined rule.
boost::json::array default_push_rules(std::string_view kind, std::string_view user_id);

}  // namespace myelin::service
