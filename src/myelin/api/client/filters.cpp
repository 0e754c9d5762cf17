// Sync filters (filter.yaml): POST /user/{userId}/filter stores a filter definition and answers
// {"filter_id"}; GET /user/{userId}/filter/{filterId} returns it, or 404 M_NOT_FOUND (js-sdk
// then uploads a new one). Only for the caller's own user ID (403 M_FORBIDDEN otherwise). The
// definition is checked against the Filter schema's types and stored as sent.

#include <charconv>

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

Error bad(std::string_view what) {
    return errors::bad_json("Invalid filter: " + std::string(what));
}

// A list of strings (rooms, senders, types, event_fields).
Result<void> check_strings(const boost::json::object& obj, std::string_view key) {
    const auto* v = obj.if_contains(key);
    if (v == nullptr) return {};
    const auto* list = v->if_array();
    if (list == nullptr) return bad("'" + std::string(key) + "' must be an array of strings");
    for (const auto& item : *list) {
        if (!item.is_string()) return bad("'" + std::string(key) + "' must be an array of strings");
    }
    return {};
}

Result<void> check_bool(const boost::json::object& obj, std::string_view key) {
    const auto* v = obj.if_contains(key);
    if (v != nullptr && !v->is_bool()) return bad("'" + std::string(key) + "' must be a boolean");
    return {};
}

// EventFilter, and RoomEventFilter when `room_event` (its extra keys).
Result<void> check_event_filter(const boost::json::value* value, std::string_view name,
                                bool room_event) {
    if (value == nullptr) return {};
    const auto* obj = value->if_object();
    if (obj == nullptr) return bad("'" + std::string(name) + "' must be an object");
    if (const auto* limit = obj->if_contains("limit")) {
        if (!limit->is_int64() && !limit->is_uint64()) return bad("'limit' must be an integer");
        if (limit->is_int64() && limit->get_int64() < 0) return bad("'limit' must not be negative");
    }
    for (auto key : {"not_senders", "not_types", "senders", "types"}) {
        if (auto r = check_strings(*obj, key); !r) return r;
    }
    if (room_event) {
        for (auto key : {"not_rooms", "rooms"}) {
            if (auto r = check_strings(*obj, key); !r) return r;
        }
        for (auto key : {"unread_thread_notifications", "lazy_load_members",
                         "include_redundant_members", "contains_url"}) {
            if (auto r = check_bool(*obj, key); !r) return r;
        }
    }
    return {};
}

// The Filter object of filter.yaml (unknown keys are allowed and kept).
Result<void> check_filter(const boost::json::object& filter) {
    if (auto r = check_strings(filter, "event_fields"); !r) return r;
    if (const auto* format = filter.if_contains("event_format")) {
        if (!format->is_string() ||
            (format->get_string() != "client" && format->get_string() != "federation")) {
            return bad("'event_format' must be \"client\" or \"federation\"");
        }
    }
    if (auto r = check_event_filter(filter.if_contains("presence"), "presence", false); !r) {
        return r;
    }
    if (auto r = check_event_filter(filter.if_contains("account_data"), "account_data", false);
        !r) {
        return r;
    }
    if (const auto* room_value = filter.if_contains("room")) {
        const auto* room = room_value->if_object();
        if (room == nullptr) return bad("'room' must be an object");
        for (auto key : {"not_rooms", "rooms"}) {
            if (auto r = check_strings(*room, key); !r) return r;
        }
        if (auto r = check_bool(*room, "include_leave"); !r) return r;
        for (auto key : {"ephemeral", "state", "timeline", "account_data"}) {
            if (auto r = check_event_filter(room->if_contains(key), key, true); !r) return r;
        }
    }
    return {};
}

// POST /user/{userId}/filter: 200 {"filter_id": "<n>"}. Errors: 400 M_NOT_JSON / M_BAD_JSON,
// 403 M_FORBIDDEN (another user), 503.
boost::asio::awaitable<Result<http::Response>> post_filter(Services& services,
                                                           RequestContext& ctx) {
    const std::string& user_id = ctx.request.path_params.at(0);
    if (auto own = require_own_user(ctx, user_id); !own) co_return own.error();
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    if (auto checked = check_filter(*body); !checked) co_return checked.error();
    auto op = services.client_data.filters.create(user_id, boost::json::serialize(*body));
    auto id = co_await std::move(op);
    if (!id) co_return id.error();
    co_return http::json_response(boost::json::object{{"filter_id", std::to_string(*id)}});
}

// GET /user/{userId}/filter/{filterId}: the stored definition. Errors: 403 M_FORBIDDEN
// (another user), 404 M_NOT_FOUND (unknown or malformed ID), 503.
boost::asio::awaitable<Result<http::Response>> get_filter(Services& services, RequestContext& ctx) {
    const std::string& user_id = ctx.request.path_params.at(0);
    if (auto own = require_own_user(ctx, user_id); !own) co_return own.error();
    const std::string& text = ctx.request.path_params.at(1);
    std::int64_t filter_id = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), filter_id);
    if (ec != std::errc() || end != text.data() + text.size() || filter_id < 0) {
        co_return errors::not_found("Filter not found");
    }
    auto op = services.client_data.filters.get(user_id, filter_id);
    auto filter = co_await std::move(op);
    if (!filter) co_return filter.error();
    co_return raw_json_response(std::move(*filter));
}

}  // namespace

void add_filter_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPost, "/user/{userId}/filter", post_filter);
    routes.add(http::Method::kGet, "/user/{userId}/filter/{filterId}", get_filter);
}

}  // namespace myelin::api::client
