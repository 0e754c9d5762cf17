#pragma once

// A user's push rules (pushrules.yaml; client-server-api/modules/push.md): the server-default
// rules (default_push_rules.hpp) merged with what the user changed. Only the changes are stored,
// as the global account-data entry "m.push_rules" (storage/client_data_records.hpp):
//   {"override": [user rules], "content": [...], "room": [...], "sender": [...],
//    "underride": [...], "defaults": {"<kind>": {"<rule_id>": {"enabled"?, "actions"?}}}}
// so that a later change of the defaults reaches every user. Order within a kind: the user's
// rules come before the server-default ones, except .m.rule.master, which is always first.
// A plain value: not thread-safe, cheap to build per request.

#include <optional>
#include <string>
#include <string_view>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"

namespace myelin::service {

// The most user-defined rules one user may have, all kinds together.
inline constexpr std::size_t kMaxUserPushRules = 500;

class PushRules {
public:
    // From the stored changes (an empty object: none). Malformed parts are ignored.
    explicit PushRules(boost::json::object stored = {});

    // Whether `kind` is one of override, content, room, sender, underride.
    static bool is_kind(std::string_view kind);

    // The stored form, to write back after a change.
    const boost::json::object& stored() const { return stored_; }

    // The whole ruleset of scope "global" for the user: {"override": [...], "content": [...],
    // "room": [...], "sender": [...], "underride": [...]}, every rule a PushRule object.
    boost::json::object ruleset(std::string_view user_id) const;

    // One rule as a PushRule object. Errors: 400 M_INVALID_PARAM (unknown kind), 404
    // M_NOT_FOUND.
    Result<boost::json::object> rule(std::string_view kind, std::string_view rule_id,
                                     std::string_view user_id) const;

    // Creates or replaces a user-defined rule from a PUT body ({"actions", "conditions"?,
    // "pattern"?}). A new rule is enabled and goes before `before`, after `after`, or first
    // among the user's rules of its kind; a replaced rule keeps its place and enabled flag
    // unless `before`/`after` moves it. Errors: 400 M_INVALID_PARAM (unknown kind, a rule_id
    // starting with "." or holding "/" or "\", a room rule not named after a room ID, a sender
    // rule not named after a user ID, before/after naming a server-default rule, too many
    // rules), 400 M_BAD_JSON / M_MISSING_PARAM (actions, conditions, pattern), 404 M_NOT_FOUND
    // (before/after names no rule of the kind).
    Result<void> put(std::string_view kind, std::string_view rule_id,
                     const boost::json::object& body, std::optional<std::string_view> before,
                     std::optional<std::string_view> after);

    // Deletes a user-defined rule. Errors: 400 M_INVALID_PARAM (unknown kind; a server-default
    // rule, which cannot be deleted), 404 M_NOT_FOUND.
    Result<void> remove(std::string_view kind, std::string_view rule_id);

    // Enables or disables a rule (user-defined or server-default). Errors: 400 M_INVALID_PARAM
    // (unknown kind), 404 M_NOT_FOUND.
    Result<void> set_enabled(std::string_view kind, std::string_view rule_id, bool enabled,
                             std::string_view user_id);

    // Replaces a rule's actions (user-defined or server-default). Errors: 400 M_INVALID_PARAM
    // (unknown kind), 400 M_BAD_JSON (actions), 404 M_NOT_FOUND.
    Result<void> set_actions(std::string_view kind, std::string_view rule_id,
                             const boost::json::value& actions, std::string_view user_id);

private:
    boost::json::array& user_rules(std::string_view kind);
    const boost::json::array* user_rules_or_null(std::string_view kind) const;
    bool is_default_rule(std::string_view kind, std::string_view rule_id,
                         std::string_view user_id) const;
    boost::json::object& default_change(std::string_view kind, std::string_view rule_id);

    boost::json::object stored_;
};

// Checks a push rule's actions: an array of "notify", "dont_notify", "coalesce" or
// {"set_tweak": string, "value"?}. Errors: 400 M_BAD_JSON.
Result<boost::json::array> validate_push_actions(const boost::json::value& actions);

}  // namespace myelin::service
