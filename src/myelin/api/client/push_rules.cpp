// Push rules (pushrules.yaml): GET /pushrules/ and /pushrules/global/ (the whole ruleset; the
// trailing slash is what js-sdk sends), GET/PUT/DELETE /pushrules/global/{kind}/{ruleId},
// GET/PUT …/enabled and …/actions. The server-default rules come from the spec
// (service/default_push_rules.cpp); they cannot be replaced or deleted, only enabled, disabled
// or given other actions. Only the scope "global" exists.

#include "myelin/service/push_rules.hpp"

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

using service::PushRules;

// GET /pushrules/: {"global": ruleset}.
boost::asio::awaitable<Result<http::Response>> get_all(Services& services, RequestContext& ctx) {
    auto op = services.client_data.push_rules.get(ctx.identity->user_id());
    auto rules = co_await std::move(op);
    if (!rules) co_return rules.error();
    co_return http::json_response(
        boost::json::object{{"global", rules->ruleset(ctx.identity->user_id())}});
}

// GET /pushrules/global/: the ruleset itself.
boost::asio::awaitable<Result<http::Response>> get_global(Services& services, RequestContext& ctx) {
    auto op = services.client_data.push_rules.get(ctx.identity->user_id());
    auto rules = co_await std::move(op);
    if (!rules) co_return rules.error();
    co_return http::json_response(rules->ruleset(ctx.identity->user_id()));
}

// The rule named by the path ({kind}, {ruleId}). Errors: 400 unknown kind, 404, 503.
boost::asio::awaitable<Result<boost::json::object>> find_rule(Services& services,
                                                              RequestContext& ctx) {
    const std::string& user = ctx.identity->user_id();
    auto op = services.client_data.push_rules.get(user);
    auto rules = co_await std::move(op);
    if (!rules) co_return rules.error();
    co_return rules->rule(ctx.request.path_params.at(0), ctx.request.path_params.at(1), user);
}

// GET /pushrules/global/{kind}/{ruleId}: the PushRule. Errors: 400 M_INVALID_PARAM (kind), 404.
boost::asio::awaitable<Result<http::Response>> get_rule(Services& services, RequestContext& ctx) {
    auto op = find_rule(services, ctx);
    auto rule = co_await std::move(op);
    if (!rule) co_return rule.error();
    co_return http::json_response(*rule);
}

// GET …/enabled: {"enabled": bool}.
boost::asio::awaitable<Result<http::Response>> get_enabled(Services& services,
                                                           RequestContext& ctx) {
    auto op = find_rule(services, ctx);
    auto rule = co_await std::move(op);
    if (!rule) co_return rule.error();
    co_return http::json_response(boost::json::object{{"enabled", rule->at("enabled")}});
}

// GET …/actions: {"actions": [...]}.
boost::asio::awaitable<Result<http::Response>> get_actions(Services& services,
                                                           RequestContext& ctx) {
    auto op = find_rule(services, ctx);
    auto rule = co_await std::move(op);
    if (!rule) co_return rule.error();
    co_return http::json_response(boost::json::object{{"actions", rule->at("actions")}});
}

// PUT /pushrules/global/{kind}/{ruleId}?before=&after=: body {"actions", "conditions"?,
// "pattern"?}. Errors: 400 M_NOT_JSON / M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM, 404
// (before/after), 503.
boost::asio::awaitable<Result<http::Response>> put_rule(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    std::optional<std::string> before;
    std::optional<std::string> after;
    if (auto b = ctx.request.query_param("before")) before = std::string(*b);
    if (auto a = ctx.request.query_param("after")) after = std::string(*a);
    auto fn = [kind = ctx.request.path_params.at(0), rule_id = ctx.request.path_params.at(1),
               body = std::move(*body), before = std::move(before),
               after = std::move(after)](PushRules& rules) -> Result<void> {
        std::optional<std::string_view> b;
        std::optional<std::string_view> a;
        if (before) b = *before;
        if (after) a = *after;
        return rules.put(kind, rule_id, body, b, a);
    };
    auto op = services.client_data.push_rules.modify(ctx.identity->user_id(), std::move(fn));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

// DELETE /pushrules/global/{kind}/{ruleId}. Errors: 400 (kind, server-default rule), 404, 503.
boost::asio::awaitable<Result<http::Response>> delete_rule(Services& services,
                                                           RequestContext& ctx) {
    auto fn = [kind = ctx.request.path_params.at(0), rule_id = ctx.request.path_params.at(1)](
                  PushRules& rules) { return rules.remove(kind, rule_id); };
    auto op = services.client_data.push_rules.modify(ctx.identity->user_id(), std::move(fn));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

// PUT …/enabled: body {"enabled": bool}. Errors: 400 M_NOT_JSON / M_BAD_JSON /
// M_MISSING_PARAM / M_INVALID_PARAM, 404, 503.
boost::asio::awaitable<Result<http::Response>> put_enabled(Services& services,
                                                           RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto enabled = json::optional_bool(*body, "enabled");
    if (!enabled) co_return enabled.error();
    if (!*enabled) co_return errors::missing_param("Missing 'enabled'");
    auto fn = [kind = ctx.request.path_params.at(0), rule_id = ctx.request.path_params.at(1),
               on = **enabled, user = ctx.identity->user_id()](PushRules& rules) {
        return rules.set_enabled(kind, rule_id, on, user);
    };
    auto op = services.client_data.push_rules.modify(ctx.identity->user_id(), std::move(fn));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

// PUT …/actions: body {"actions": [...]}. Errors: as PUT …/enabled.
boost::asio::awaitable<Result<http::Response>> put_actions(Services& services,
                                                           RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    const auto* actions = body->if_contains("actions");
    if (actions == nullptr || actions->is_null()) {
        co_return errors::missing_param("Missing 'actions'");
    }
    auto fn = [kind = ctx.request.path_params.at(0), rule_id = ctx.request.path_params.at(1),
               actions = *actions, user = ctx.identity->user_id()](PushRules& rules) {
        return rules.set_actions(kind, rule_id, actions, user);
    };
    auto op = services.client_data.push_rules.modify(ctx.identity->user_id(), std::move(fn));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_push_rule_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    const std::string rule = "/pushrules/global/{kind}/{ruleId}";
    routes.add(http::Method::kGet, "/pushrules/", get_all);
    routes.add(http::Method::kGet, "/pushrules/global/", get_global);
    routes.add(http::Method::kGet, rule, get_rule);
    routes.add(http::Method::kPut, rule, put_rule);
    routes.add(http::Method::kDelete, rule, delete_rule);
    routes.add(http::Method::kGet, rule + "/enabled", get_enabled);
    routes.add(http::Method::kPut, rule + "/enabled", put_enabled);
    routes.add(http::Method::kGet, rule + "/actions", get_actions);
    routes.add(http::Method::kPut, rule + "/actions", put_actions);
}

}  // namespace myelin::api::client
