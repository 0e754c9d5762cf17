// Rooms (issue #8 §2; spec create_room.yaml, room_send.yaml, room_state.yaml, rooms.yaml,
// joining.yaml, leaving.yaml, inviting.yaml, kicking.yaml, banning.yaml, redaction.yaml,
// message_pagination.yaml, room_event_by_id, room_context, directory.yaml,
// list_public_rooms.yaml): the handlers decode and check the request, the RoomService does the
// rest in storage jobs. Every route answers under /v3 and /r0.

#include <algorithm>
#include <charconv>
#include <string>
#include <utility>

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/events/identifiers.hpp"
#include "myelin/events/json_signing.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/event_builder.hpp"
#include "myelin/service/room_service.hpp"

namespace myelin::api::client {
namespace {

using boost::json::array;
using boost::json::object;
using service::Async;

// An event's content may be up to the event size limit; the whole event is checked later.
constexpr std::size_t kEventBodyLimit = service::kMaxEventBytes + 1024;
// createRoom carries initial_state and power levels: several events' worth.
constexpr std::size_t kCreateRoomBodyLimit = 8 * service::kMaxEventBytes;

service::Actor actor_of(const RequestContext& ctx) {
    return service::Actor{ctx.identity->user_id(), ctx.identity->device_id()};
}

const std::string& param(const RequestContext& ctx, std::size_t i) {
    return ctx.request.path_params.at(i);
}

http::Response event_id_response(const std::string& event_id) {
    object out;
    out["event_id"] = event_id;
    return http::json_response(out);
}

// An optional string field that must be a string when present.
Result<std::optional<std::string>> reason_of(const object& body) {
    return json::optional_string(body, "reason");
}

Result<std::vector<std::string>> string_list(const object& body, std::string_view key) {
    std::vector<std::string> out;
    const auto* v = body.if_contains(key);
    if (v == nullptr || v->is_null()) return out;
    if (!v->is_array()) return errors::bad_json(std::string(key) + " must be an array of strings");
    for (const auto& item : v->as_array()) {
        if (!item.is_string()) {
            return errors::bad_json(std::string(key) + " must be an array of strings");
        }
        out.emplace_back(item.as_string());
    }
    return out;
}

// ---- POST /createRoom ---------------------------------------------------------------------

Result<service::CreateRoomRequest> decode_create_room(std::string_view text) {
    auto body = json::parse_object(text, true);
    if (!body) return body.error();
    service::CreateRoomRequest r;
    auto visibility = json::optional_string(*body, "visibility");
    if (!visibility) return visibility.error();
    if (*visibility) {
        if (**visibility != "public" && **visibility != "private") {
            return errors::invalid_param("visibility must be 'public' or 'private'");
        }
        r.visibility_public = **visibility == "public";
    }
    auto preset = json::optional_string(*body, "preset");
    if (!preset) return preset.error();
    if (*preset) {
        if (**preset != "private_chat" && **preset != "trusted_private_chat" &&
            **preset != "public_chat") {
            return errors::invalid_param(
                "preset must be private_chat, trusted_private_chat or public_chat");
        }
        r.preset = **preset;
    }
    auto version = json::optional_string(*body, "room_version");
    if (!version) return version.error();
    if (*version) r.room_version = **version;
    if (body->contains("room_version") && !*version) {
        return errors::bad_json("room_version must be a string");
    }
    auto name = json::optional_string(*body, "name");
    if (!name) return name.error();
    r.name = std::move(*name);
    auto topic = json::optional_string(*body, "topic");
    if (!topic) return topic.error();
    r.topic = std::move(*topic);
    auto alias = json::optional_string(*body, "room_alias_name");
    if (!alias) return alias.error();
    if (*alias) {
        const std::string& a = **alias;
        if (a.empty() || a.size() > 200 || a.find_first_of(":# \t\r\n") != std::string::npos) {
            return errors::invalid_param("room_alias_name is not a valid alias localpart");
        }
        r.room_alias_name = a;
    }
    auto invite = string_list(*body, "invite");
    if (!invite) return invite.error();
    for (const auto& user : *invite) {
        if (!events::is_valid_user_id(user)) {
            return errors::invalid_param("invite holds an invalid user ID");
        }
    }
    r.invite = std::move(*invite);
    auto is_direct = json::optional_bool(*body, "is_direct");
    if (!is_direct) return is_direct.error();
    r.is_direct = is_direct->value_or(false);
    auto creation = json::optional_object(*body, "creation_content");
    if (!creation) return creation.error();
    if (*creation) r.creation_content = **creation;
    auto override_pl = json::optional_object(*body, "power_level_content_override");
    if (!override_pl) return override_pl.error();
    if (*override_pl) r.power_level_content_override = **override_pl;
    if (const auto* initial = body->if_contains("initial_state");
        initial != nullptr && !initial->is_null()) {
        if (!initial->is_array()) return errors::bad_json("initial_state must be an array");
        for (const auto& item : initial->as_array()) {
            if (!item.is_object()) {
                return errors::bad_json("initial_state must be an array of state events");
            }
            const auto& o = item.as_object();
            auto type = json::required_string(o, "type");
            if (!type) return type.error();
            auto key = json::optional_string(o, "state_key");
            if (!key) return key.error();
            auto content = json::optional_object(o, "content");
            if (!content) return content.error();
            if (!*content) return errors::missing_param("initial_state events need a content");
            r.initial_state.push_back(
                service::InitialStateEvent{std::move(*type), key->value_or(""), **content});
        }
    }
    return r;
}

Async<http::Response> create_room(Services& services, RequestContext& ctx) {
    auto request = decode_create_room(ctx.request.body);
    if (!request) co_return request.error();
    auto op = services.rooms.create_room(actor_of(ctx), std::move(*request));
    auto room_id = co_await std::move(op);
    if (!room_id) co_return room_id.error();
    object out;
    out["room_id"] = *room_id;
    co_return http::json_response(out);
}

// ---- Sending --------------------------------------------------------------------------------

Async<http::Response> send_event(Services& services, RequestContext& ctx) {
    auto content = json::parse_object(ctx.request.body);
    if (!content) co_return content.error();
    auto op = services.rooms.send(actor_of(ctx), param(ctx, 0), param(ctx, 1), std::nullopt,
                                  std::move(*content), param(ctx, 2));
    auto event_id = co_await std::move(op);
    if (!event_id) co_return event_id.error();
    co_return event_id_response(*event_id);
}

Async<http::Response> put_state(Services& services, RequestContext& ctx) {
    auto content = json::parse_object(ctx.request.body);
    if (!content) co_return content.error();
    std::string state_key = ctx.request.path_params.size() > 2 ? param(ctx, 2) : std::string();
    auto op = services.rooms.send(actor_of(ctx), param(ctx, 0), param(ctx, 1), std::move(state_key),
                                  std::move(*content), std::nullopt);
    auto event_id = co_await std::move(op);
    if (!event_id) co_return event_id.error();
    co_return event_id_response(*event_id);
}

Async<http::Response> get_state_event(Services& services, RequestContext& ctx) {
    std::string state_key = ctx.request.path_params.size() > 2 ? param(ctx, 2) : std::string();
    const bool whole =
        ctx.request.query_param("format") == std::optional<std::string_view>("event");
    auto op = services.rooms.state_event(actor_of(ctx), param(ctx, 0), param(ctx, 1),
                                         std::move(state_key), whole);
    auto content = co_await std::move(op);
    if (!content) co_return content.error();
    co_return http::json_response(*content);
}

Async<http::Response> get_state(Services& services, RequestContext& ctx) {
    auto op = services.rooms.state(actor_of(ctx), param(ctx, 0));
    auto events = co_await std::move(op);
    if (!events) co_return events.error();
    co_return http::json_response(*events);
}

Async<http::Response> redact(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto reason = reason_of(*body);
    if (!reason) co_return reason.error();
    auto op = services.rooms.redact(actor_of(ctx), param(ctx, 0), param(ctx, 1), std::move(*reason),
                                    param(ctx, 2));
    auto event_id = co_await std::move(op);
    if (!event_id) co_return event_id.error();
    co_return event_id_response(*event_id);
}

// ---- Membership -----------------------------------------------------------------------------

Async<http::Response> join_room_id(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto reason = reason_of(*body);
    if (!reason) co_return reason.error();
    auto op = services.rooms.join_by_id_or_alias(actor_of(ctx), param(ctx, 0), std::move(*reason));
    auto room_id = co_await std::move(op);
    if (!room_id) co_return room_id.error();
    object out;
    out["room_id"] = *room_id;
    co_return http::json_response(out);
}

// leave, invite, kick, ban, unban: body {user_id (not for leave), reason?}.
Async<http::Response> change_membership(Services& services, RequestContext& ctx,
                                        service::MembershipAction action) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto reason = reason_of(*body);
    if (!reason) co_return reason.error();
    std::string target;
    if (action != service::MembershipAction::kLeave) {
        auto user = json::required_string(*body, "user_id");
        if (!user) co_return user.error();
        if (!events::is_valid_user_id(*user)) {
            co_return errors::invalid_param("user_id is not a valid user ID");
        }
        target = std::move(*user);
    }
    auto op = services.rooms.membership(actor_of(ctx), param(ctx, 0), action, std::move(target),
                                        std::move(*reason));
    auto event_id = co_await std::move(op);
    if (!event_id) co_return event_id.error();
    co_return http::json_response(object{});
}

Async<http::Response> forget(Services& services, RequestContext& ctx) {
    auto op = services.rooms.forget(actor_of(ctx), param(ctx, 0));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(object{});
}

// ---- Reading --------------------------------------------------------------------------------

Result<int> int_param(const RequestContext& ctx, std::string_view name, int fallback) {
    auto v = ctx.request.query_param(name);
    if (!v) return fallback;
    int value = 0;
    auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), value);
    if (ec != std::errc() || ptr != v->data() + v->size()) {
        return errors::invalid_param(std::string(name) + " must be an integer");
    }
    return value;
}

std::optional<std::string> string_param(const RequestContext& ctx, std::string_view name) {
    auto v = ctx.request.query_param(name);
    if (!v) return std::nullopt;
    return std::string(*v);
}

Result<service::MessagesRequest> decode_messages(const RequestContext& ctx) {
    service::MessagesRequest r;
    auto dir = ctx.request.query_param("dir");
    if (!dir) return errors::missing_param("dir is required");
    if (*dir != "b" && *dir != "f") return errors::invalid_param("dir must be 'b' or 'f'");
    r.backwards = *dir == "b";
    r.from = string_param(ctx, "from");
    r.to = string_param(ctx, "to");
    auto limit = int_param(ctx, "limit", 10);
    if (!limit) return limit.error();
    if (*limit < 0) return errors::invalid_param("limit must not be negative");
    r.limit = *limit;
    if (auto filter_text = ctx.request.query_param("filter")) {
        auto filter = json::parse_object(*filter_text);
        if (!filter) return errors::invalid_param("filter is not a JSON object");
        const auto list = [&](std::string_view key) { return string_list(*filter, key); };
        if (filter->contains("types")) {
            auto types = list("types");
            if (!types) return errors::invalid_param("filter.types must be strings");
            r.types = std::move(*types);
        }
        if (filter->contains("senders")) {
            auto senders = list("senders");
            if (!senders) return errors::invalid_param("filter.senders must be strings");
            r.senders = std::move(*senders);
        }
        auto not_types = list("not_types");
        if (!not_types) return errors::invalid_param("filter.not_types must be strings");
        r.not_types = std::move(*not_types);
        auto not_senders = list("not_senders");
        if (!not_senders) return errors::invalid_param("filter.not_senders must be strings");
        r.not_senders = std::move(*not_senders);
        if (const auto* l = filter->if_contains("limit");
            l != nullptr && l->is_int64() && !ctx.request.query_param("limit")) {
            r.limit = static_cast<int>(std::clamp<std::int64_t>(l->as_int64(), 0, 1000));
        }
    }
    return r;
}

Async<http::Response> messages(Services& services, RequestContext& ctx) {
    auto request = decode_messages(ctx);
    if (!request) co_return request.error();
    auto op = services.rooms.messages(actor_of(ctx), param(ctx, 0), std::move(*request));
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

Async<http::Response> get_event(Services& services, RequestContext& ctx) {
    auto op = services.rooms.event(actor_of(ctx), param(ctx, 0), param(ctx, 1));
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

Async<http::Response> context(Services& services, RequestContext& ctx) {
    auto limit = int_param(ctx, "limit", 10);
    if (!limit) co_return limit.error();
    auto op = services.rooms.context(actor_of(ctx), param(ctx, 0), param(ctx, 1), *limit);
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

Async<http::Response> members(Services& services, RequestContext& ctx) {
    auto op = services.rooms.members(actor_of(ctx), param(ctx, 0), string_param(ctx, "membership"),
                                     string_param(ctx, "not_membership"));
    auto chunk = co_await std::move(op);
    if (!chunk) co_return chunk.error();
    object out;
    out["chunk"] = std::move(*chunk);
    co_return http::json_response(out);
}

Async<http::Response> joined_members(Services& services, RequestContext& ctx) {
    auto op = services.rooms.joined_members(actor_of(ctx), param(ctx, 0));
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

Async<http::Response> joined_rooms(Services& services, RequestContext& ctx) {
    auto op = services.rooms.joined_rooms(ctx.identity->user_id());
    auto rooms = co_await std::move(op);
    if (!rooms) co_return rooms.error();
    array list;
    for (auto& r : *rooms) list.emplace_back(std::move(r));
    object out;
    out["joined_rooms"] = std::move(list);
    co_return http::json_response(out);
}

// ---- Aliases and the directory ----------------------------------------------------------------

Async<http::Response> put_alias(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto room_id = json::required_string(*body, "room_id");
    if (!room_id) co_return room_id.error();
    auto op = services.rooms.create_alias(actor_of(ctx), param(ctx, 0), std::move(*room_id));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(object{});
}

Async<http::Response> get_alias(Services& services, RequestContext& ctx) {
    auto op = services.rooms.resolve_alias(param(ctx, 0));
    auto room_id = co_await std::move(op);
    if (!room_id) co_return room_id.error();
    object out;
    out["room_id"] = *room_id;
    out["servers"] = array{boost::json::value(services.config.server_name)};
    co_return http::json_response(out);
}

Async<http::Response> delete_alias(Services& services, RequestContext& ctx) {
    auto op = services.rooms.delete_alias(actor_of(ctx), param(ctx, 0));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(object{});
}

Async<http::Response> public_rooms(Services& services, RequestContext& ctx) {
    auto limit = int_param(ctx, "limit", 100);
    if (!limit) co_return limit.error();
    auto op = services.rooms.public_rooms(*limit, string_param(ctx, "since"));
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

// POST /publicRooms: {limit?, since?, filter?, ...}; the filter and third-party networks are not
// supported (every listed room is returned).
Async<http::Response> post_public_rooms(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    int limit = 100;
    if (const auto* l = body->if_contains("limit"); l != nullptr && !l->is_null()) {
        if (!l->is_int64()) co_return errors::bad_json("limit must be an integer");
        limit = static_cast<int>(std::clamp<std::int64_t>(l->as_int64(), 0, 500));
    }
    auto since = json::optional_string(*body, "since");
    if (!since) co_return since.error();
    auto op = services.rooms.public_rooms(limit, std::move(*since));
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

Async<http::Response> get_room_aliases(Services& services, RequestContext& ctx) {
    auto op = services.rooms.room_aliases(actor_of(ctx), param(ctx, 0));
    auto aliases = co_await std::move(op);
    if (!aliases) co_return aliases.error();
    array list;
    for (auto& a : *aliases) list.emplace_back(std::move(a));
    object out;
    out["aliases"] = std::move(list);
    co_return http::json_response(out);
}

Async<http::Response> get_visibility(Services& services, RequestContext& ctx) {
    auto op = services.rooms.room_visibility(param(ctx, 0));
    auto is_public = co_await std::move(op);
    if (!is_public) co_return is_public.error();
    object out;
    out["visibility"] = *is_public ? "public" : "private";
    co_return http::json_response(out);
}

Async<http::Response> put_visibility(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    auto visibility = json::optional_string(*body, "visibility");
    if (!visibility) co_return visibility.error();
    const std::string v = visibility->value_or("public");
    if (v != "public" && v != "private") {
        co_return errors::invalid_param("visibility must be 'public' or 'private'");
    }
    auto op = services.rooms.set_room_visibility(actor_of(ctx), param(ctx, 0), v == "public");
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(object{});
}

// ---- GET /_matrix/key/v2/server -------------------------------------------------------------

// The server's keys (server-server API "Publishing Keys"), signed by the key itself; valid for
// a day from each request.
Result<http::Response> server_keys(Services& services, const events::SigningKey& key,
                                   const Clock& clock) {
    object verify;
    verify[key.key_id()] = object{{"key", key.public_key_base64()}};
    object out;
    out["server_name"] = services.config.server_name;
    out["valid_until_ts"] = clock.now_ms() + 24LL * 3600 * 1000;
    out["verify_keys"] = std::move(verify);
    out["old_verify_keys"] = object{};
    if (auto signed_ok = events::sign_json(out, services.config.server_name, key); !signed_ok) {
        return signed_ok.error();
    }
    return http::json_response(out);
}

}  // namespace

void add_room_routes(Router& router, Services& services) {
    using Action = service::MembershipAction;
    auto bind_membership = [&services](Action action) {
        return [&services, action](RequestContext& ctx) {
            return change_membership(services, ctx, action);
        };
    };
    AuthenticatedRoutes routes(router, services);
    using M = http::Method;
    routes.add(M::kPost, "/createRoom", create_room, kCreateRoomBodyLimit);
    routes.add(M::kPut, "/rooms/{roomId}/send/{eventType}/{txnId}", send_event, kEventBodyLimit);
    routes.add(M::kPut, "/rooms/{roomId}/state/{eventType}/{stateKey}", put_state, kEventBodyLimit);
    routes.add(M::kPut, "/rooms/{roomId}/state/{eventType}", put_state, kEventBodyLimit);
    routes.add(M::kPut, "/rooms/{roomId}/state/{eventType}/", put_state, kEventBodyLimit);
    routes.add(M::kGet, "/rooms/{roomId}/state/{eventType}/{stateKey}", get_state_event);
    routes.add(M::kGet, "/rooms/{roomId}/state/{eventType}", get_state_event);
    routes.add(M::kGet, "/rooms/{roomId}/state/{eventType}/", get_state_event);
    routes.add(M::kGet, "/rooms/{roomId}/state", get_state);
    routes.add(M::kPut, "/rooms/{roomId}/redact/{eventId}/{txnId}", redact);
    routes.add(M::kPost, "/rooms/{roomId}/join", join_room_id);
    routes.add(M::kPost, "/join/{roomIdOrAlias}", join_room_id);
    routes.add(M::kPost, "/rooms/{roomId}/leave", bind_membership(Action::kLeave));
    routes.add(M::kPost, "/rooms/{roomId}/invite", bind_membership(Action::kInvite));
    routes.add(M::kPost, "/rooms/{roomId}/kick", bind_membership(Action::kKick));
    routes.add(M::kPost, "/rooms/{roomId}/ban", bind_membership(Action::kBan));
    routes.add(M::kPost, "/rooms/{roomId}/unban", bind_membership(Action::kUnban));
    routes.add(M::kPost, "/rooms/{roomId}/forget", forget);
    routes.add(M::kGet, "/rooms/{roomId}/messages", messages);
    routes.add(M::kGet, "/rooms/{roomId}/event/{eventId}", get_event);
    routes.add(M::kGet, "/rooms/{roomId}/context/{eventId}", context);
    routes.add(M::kGet, "/rooms/{roomId}/members", members);
    routes.add(M::kGet, "/rooms/{roomId}/joined_members", joined_members);
    routes.add(M::kGet, "/joined_rooms", joined_rooms);
    routes.add(M::kPut, "/directory/room/{roomAlias}", put_alias);
    routes.add(M::kGet, "/directory/room/{roomAlias}", get_alias);
    routes.add(M::kDelete, "/directory/room/{roomAlias}", delete_alias);
    // Without authentication (the spec's GET /publicRooms and the listing's GET).
    router.add(Route{
        .method = M::kGet, .path = "/publicRooms", .async = bind_services(services, public_rooms)});
    router.add(Route{.method = M::kGet,
                     .path = "/directory/list/room/{roomId}",
                     .async = bind_services(services, get_visibility)});
    routes.add(M::kPost, "/publicRooms", post_public_rooms);
    routes.add(M::kGet, "/rooms/{roomId}/aliases", get_room_aliases);
    routes.add(M::kPut, "/directory/list/room/{roomId}", put_visibility);
    const events::SigningKey& key = services.signing_key;
    const Clock& clock = services.clock;
    router.add(Route{.method = M::kGet,
                     .mount = Mount::kExact,
                     .path = "/_matrix/key/v2/server",
                     .sync = [&services, &key, &clock](RequestContext&) {
                         return server_keys(services, key, clock);
                     }});
}

}  // namespace myelin::api::client
