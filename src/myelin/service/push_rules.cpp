#include "myelin/service/push_rules.hpp"

#include <array>
#include <utility>

#include "myelin/service/default_push_rules.hpp"

namespace myelin::service {
namespace {

constexpr std::array<std::string_view, 5> kKinds{"override", "content", "room", "sender",
                                                 "underride"};

Error unknown_kind() { return errors::invalid_param("Unknown push rule kind"); }
Error no_such_rule() { return errors::not_found("Push rule not found"); }

// The index of the rule with `rule_id` in `rules`, or -1.
long find_rule(const boost::json::array& rules, std::string_view rule_id) {
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const auto* rule = rules[i].if_object();
        if (rule == nullptr) continue;
        const auto* id = rule->if_contains("rule_id");
        if (id != nullptr && id->is_string() && id->get_string() == rule_id) {
            return static_cast<long>(i);
        }
    }
    return -1;
}

// The default rule of `kind` with the user's stored changes (enabled, actions) applied.
boost::json::object with_changes(boost::json::object rule, const boost::json::object* change) {
    if (change == nullptr) return rule;
    if (const auto* enabled = change->if_contains("enabled"); enabled && enabled->is_bool()) {
        rule["enabled"] = *enabled;
    }
    if (const auto* actions = change->if_contains("actions"); actions && actions->is_array()) {
        rule["actions"] = *actions;
    }
    return rule;
}

Result<boost::json::array> validate_conditions(const boost::json::value& conditions) {
    const auto* list = conditions.if_array();
    if (list == nullptr) return errors::bad_json("'conditions' must be an array");
    if (list->size() > 64) return errors::bad_json("Too many conditions");
    for (const auto& c : *list) {
        const auto* obj = c.if_object();
        if (obj == nullptr) return errors::bad_json("Each condition must be an object");
        const auto* kind = obj->if_contains("kind");
        if (kind == nullptr || !kind->is_string()) {
            return errors::bad_json("Each condition needs a string 'kind'");
        }
        for (const char* key : {"key", "pattern", "is"}) {
            const auto* v = obj->if_contains(key);
            if (v != nullptr && !v->is_string()) {
                return errors::bad_json(std::string("Condition '") + key + "' must be a string");
            }
        }
    }
    return *list;
}

}  // namespace

Result<boost::json::array> validate_push_actions(const boost::json::value& actions) {
    const auto* list = actions.if_array();
    if (list == nullptr) return errors::bad_json("'actions' must be an array");
    if (list->size() > 32) return errors::bad_json("Too many actions");
    for (const auto& a : *list) {
        if (const auto* name = a.if_string()) {
            if (*name != "notify" && *name != "dont_notify" && *name != "coalesce") {
                return errors::bad_json("Unknown action '" + std::string(*name) + "'");
            }
            continue;
        }
        const auto* obj = a.if_object();
        const boost::json::value* tweak = obj ? obj->if_contains("set_tweak") : nullptr;
        if (tweak == nullptr || !tweak->is_string()) {
            return errors::bad_json("An action must be a string or {\"set_tweak\": ...}");
        }
    }
    return *list;
}

PushRules::PushRules(boost::json::object stored) : stored_(std::move(stored)) {}

bool PushRules::is_kind(std::string_view kind) {
    for (auto k : kKinds) {
        if (k == kind) return true;
    }
    return false;
}

const boost::json::array* PushRules::user_rules_or_null(std::string_view kind) const {
    const auto* v = stored_.if_contains(kind);
    return v ? v->if_array() : nullptr;
}

boost::json::array& PushRules::user_rules(std::string_view kind) {
    auto& v = stored_[kind];
    if (!v.is_array()) v = boost::json::array{};
    return v.get_array();
}

bool PushRules::is_default_rule(std::string_view kind, std::string_view rule_id,
                                std::string_view user_id) const {
    return find_rule(default_push_rules(kind, user_id), rule_id) >= 0;
}

boost::json::object& PushRules::default_change(std::string_view kind, std::string_view rule_id) {
    auto& defaults = stored_["defaults"];
    if (!defaults.is_object()) defaults = boost::json::object{};
    auto& of_kind = defaults.get_object()[kind];
    if (!of_kind.is_object()) of_kind = boost::json::object{};
    auto& change = of_kind.get_object()[rule_id];
    if (!change.is_object()) change = boost::json::object{};
    return change.get_object();
}

boost::json::object PushRules::ruleset(std::string_view user_id) const {
    const boost::json::object* defaults = nullptr;
    if (const auto* d = stored_.if_contains("defaults")) defaults = d->if_object();
    boost::json::object out;
    for (auto kind : kKinds) {
        const boost::json::object* changes = nullptr;
        if (defaults != nullptr) {
            if (const auto* c = defaults->if_contains(kind)) changes = c->if_object();
        }
        auto change_of = [&](const boost::json::object& rule) -> const boost::json::object* {
            if (changes == nullptr) return nullptr;
            const auto* c = changes->if_contains(rule.at("rule_id").as_string());
            return c ? c->if_object() : nullptr;
        };
        boost::json::array rules;
        auto server = default_push_rules(kind, user_id);
        std::size_t first_default = 0;
        // .m.rule.master stays above the user's rules.
        if (!server.empty() && server[0].as_object().at("rule_id") == ".m.rule.master") {
            const auto& master = server[0].as_object();
            rules.push_back(with_changes(master, change_of(master)));
            first_default = 1;
        }
        if (const auto* mine = user_rules_or_null(kind)) {
            for (const auto& r : *mine) {
                if (r.is_object()) rules.push_back(r);
            }
        }
        for (std::size_t i = first_default; i < server.size(); ++i) {
            const auto& rule = server[i].as_object();
            rules.push_back(with_changes(rule, change_of(rule)));
        }
        out[kind] = std::move(rules);
    }
    return out;
}

Result<boost::json::object> PushRules::rule(std::string_view kind, std::string_view rule_id,
                                            std::string_view user_id) const {
    if (!is_kind(kind)) return unknown_kind();
    auto all = ruleset(user_id);
    const auto& rules = all.at(kind).as_array();
    auto index = find_rule(rules, rule_id);
    if (index < 0) return no_such_rule();
    return rules[static_cast<std::size_t>(index)].as_object();
}

Result<void> PushRules::put(std::string_view kind, std::string_view rule_id,
                            const boost::json::object& body, std::optional<std::string_view> before,
                            std::optional<std::string_view> after) {
    if (!is_kind(kind)) return unknown_kind();
    if (rule_id.empty() || rule_id.front() == '.') {
        return errors::invalid_param("Rule IDs starting with '.' are reserved for the server");
    }
    if (rule_id.find_first_of("/\\") != std::string_view::npos) {
        return errors::invalid_param("Rule IDs may not contain '/' or '\\'");
    }
    if (rule_id.size() > 255) return errors::invalid_param("Rule ID too long");
    if (kind == "room" && rule_id.front() != '!') {
        return errors::invalid_param("The rule ID of a room rule is a room ID");
    }
    if (kind == "sender" && rule_id.front() != '@') {
        return errors::invalid_param("The rule ID of a sender rule is a user ID");
    }
    const auto* actions_value = body.if_contains("actions");
    if (actions_value == nullptr || actions_value->is_null()) {
        return errors::missing_param("Missing 'actions'");
    }
    auto actions = validate_push_actions(*actions_value);
    if (!actions) return actions.error();

    boost::json::object rule;
    rule["rule_id"] = rule_id;
    rule["default"] = false;
    rule["enabled"] = true;
    if (kind == "override" || kind == "underride") {
        boost::json::array conditions;
        if (const auto* c = body.if_contains("conditions"); c != nullptr && !c->is_null()) {
            auto checked = validate_conditions(*c);
            if (!checked) return checked.error();
            conditions = std::move(*checked);
        }
        rule["conditions"] = std::move(conditions);
    } else if (kind == "content") {
        const auto* pattern = body.if_contains("pattern");
        if (pattern == nullptr || pattern->is_null()) {
            return errors::missing_param("Content rules need a 'pattern'");
        }
        if (!pattern->is_string()) return errors::bad_json("'pattern' must be a string");
        rule["pattern"] = *pattern;
    }
    rule["actions"] = std::move(*actions);

    auto& rules = user_rules(kind);
    const auto existing = find_rule(rules, rule_id);
    auto anchor_name = before ? before : after;
    if (anchor_name) {
        if (!anchor_name->empty() && anchor_name->front() == '.') {
            return errors::invalid_param("Rules cannot be placed relative to server-default rules");
        }
        if (find_rule(rules, *anchor_name) < 0 || *anchor_name == rule_id) {
            return errors::not_found("The rule named by before/after does not exist");
        }
    }
    if (existing < 0) {
        std::size_t total = 0;
        for (auto k : kKinds) {
            if (const auto* list = user_rules_or_null(k)) total += list->size();
        }
        if (total >= kMaxUserPushRules) return errors::invalid_param("Too many push rules");
    } else {
        const auto& old = rules[static_cast<std::size_t>(existing)].as_object();
        if (const auto* enabled = old.if_contains("enabled"); enabled && enabled->is_bool()) {
            rule["enabled"] = *enabled;
        }
        if (!anchor_name) {
            rules[static_cast<std::size_t>(existing)] = std::move(rule);
            return {};
        }
        rules.erase(rules.begin() + existing);
    }
    std::size_t position = 0;
    if (anchor_name) {
        position = static_cast<std::size_t>(find_rule(rules, *anchor_name));
        if (after) ++position;
    }
    rules.insert(rules.begin() + static_cast<long>(position), boost::json::value(std::move(rule)));
    return {};
}

Result<void> PushRules::remove(std::string_view kind, std::string_view rule_id) {
    if (!is_kind(kind)) return unknown_kind();
    if (!rule_id.empty() && rule_id.front() == '.') {
        return errors::invalid_param("Server-default rules cannot be deleted");
    }
    auto& rules = user_rules(kind);
    auto index = find_rule(rules, rule_id);
    if (index < 0) return no_such_rule();
    rules.erase(rules.begin() + index);
    return {};
}

Result<void> PushRules::set_enabled(std::string_view kind, std::string_view rule_id, bool enabled,
                                    std::string_view user_id) {
    if (!is_kind(kind)) return unknown_kind();
    if (is_default_rule(kind, rule_id, user_id)) {
        default_change(kind, rule_id)["enabled"] = enabled;
        return {};
    }
    auto* rules = user_rules_or_null(kind) ? &user_rules(kind) : nullptr;
    auto index = rules ? find_rule(*rules, rule_id) : -1;
    if (index < 0) return no_such_rule();
    (*rules)[static_cast<std::size_t>(index)].as_object()["enabled"] = enabled;
    return {};
}

Result<void> PushRules::set_actions(std::string_view kind, std::string_view rule_id,
                                    const boost::json::value& actions, std::string_view user_id) {
    if (!is_kind(kind)) return unknown_kind();
    auto checked = validate_push_actions(actions);
    if (!checked) return checked.error();
    if (is_default_rule(kind, rule_id, user_id)) {
        default_change(kind, rule_id)["actions"] = std::move(*checked);
        return {};
    }
    auto* rules = user_rules_or_null(kind) ? &user_rules(kind) : nullptr;
    auto index = rules ? find_rule(*rules, rule_id) : -1;
    if (index < 0) return no_such_rule();
    (*rules)[static_cast<std::size_t>(index)].as_object()["actions"] = std::move(*checked);
    return {};
}

}  // namespace myelin::service
