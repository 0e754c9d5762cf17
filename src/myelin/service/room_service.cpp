#include "myelin/service/room_service.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <sodium.h>

#include "myelin/events/auth_state.hpp"
#include "myelin/events/identifiers.hpp"
#include "myelin/events/power_levels.hpp"
#include "myelin/events/room_version.hpp"
#include "myelin/service/client_events.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

namespace {

using boost::json::array;
using boost::json::object;

// /messages with a filter reads at most this many batches of `limit` events.
constexpr int kMaxFilteredBatches = 10;

Error not_member() { return errors::forbidden("You are not a member of this room"); }

// "!" + 18 random letters + ":" + server name.
std::string generate_room_id(std::string_view server_name) {
    static constexpr std::string_view kAlphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string id = "!";
    for (int i = 0; i < 18; ++i) {
        id += kAlphabet[randombytes_uniform(static_cast<std::uint32_t>(kAlphabet.size()))];
    }
    id += ':';
    id += server_name;
    return id;
}

std::string localpart_of(std::string_view user_id) {
    const auto colon = user_id.find(':');
    if (user_id.size() < 2 || colon == std::string_view::npos) return std::string(user_id);
    return std::string(user_id.substr(1, colon - 1));
}

// What a user may read of a room: history up to `upto` (inclusive), and the current state only
// when joined.
struct Access {
    std::int64_t upto = 0;
    bool joined = false;
};

Result<Access> access_of(storage::ReadTxn& txn, std::string_view room_id,
                         std::string_view user_id) {
    auto m = txn.find_membership(room_id, user_id);
    if (!m) return m.error();
    if (!*m) return not_member();
    if ((*m)->membership == "join") {
        auto max = txn.max_stream_ordering();
        if (!max) return max.error();
        return Access{*max, true};
    }
    if ((*m)->membership == "leave" || (*m)->membership == "ban") {
        return Access{(*m)->stream_ordering, false};
    }
    return not_member();
}

Result<Access> joined_access(storage::ReadTxn& txn, std::string_view room_id,
                             std::string_view user_id) {
    auto access = access_of(txn, room_id, user_id);
    if (!access) return access.error();
    if (!access->joined) return not_member();
    return access;
}

// The client format of a stored event, with redacted_because when it was redacted.
Result<object> client_event_with_redaction(storage::ReadTxn& txn, const storage::EventRecord& e) {
    if (e.redacted_by.empty()) return client_event(e);
    auto redaction = txn.find_event(e.redacted_by);
    if (!redaction) return redaction.error();
    if (!*redaction) return client_event(e);
    auto because = client_event(**redaction);
    if (!because) return because.error();
    return client_event(e, &*because);
}

Result<array> client_events(storage::ReadTxn& txn,
                            const std::vector<storage::EventRecord>& events) {
    array out;
    out.reserve(events.size());
    for (const auto& e : events) {
        auto ce = client_event_with_redaction(txn, e);
        if (!ce) return ce.error();
        out.emplace_back(std::move(*ce));
    }
    return out;
}

Result<storage::RoomRecord> find_room_or(storage::ReadTxn& txn, std::string_view room_id,
                                         Error missing) {
    auto room = txn.find_room(room_id);
    if (!room) return room.error();
    if (!*room) return missing;
    return std::move(**room);
}

// Whether the user is joined to the room and at its m.room.canonical_alias level: who may
// manage its aliases and its directory listing besides an alias's creator.
Result<bool> may_manage_directory(storage::ReadTxn& txn, std::string_view room_id,
                                  std::string_view user_id) {
    auto room = txn.find_room(room_id);
    if (!room) return room.error();
    if (!*room) return false;
    const events::RoomVersion* version = events::find_room_version((*room)->room_version);
    auto m = txn.find_membership(room_id, user_id);
    if (!m) return m.error();
    if (version == nullptr || !*m || (*m)->membership != "join") return false;
    events::AuthState state;
    for (std::string_view type : {"m.room.create", "m.room.power_levels"}) {
        auto e = txn.state_event(room_id, type, "");
        if (!e) return e.error();
        if (!*e) continue;
        auto pdu = stored_pdu(**e);
        if (!pdu) return pdu.error();
        state.put((*e)->event_id, std::move(*pdu));
    }
    const events::PowerLevels levels(state, *version);
    return levels.user_level(user_id) >= levels.event_level("m.room.canonical_alias", true);
}

// ---- createRoom ----------------------------------------------------------------------------

object default_power_levels(std::string_view creator, const CreateRoomRequest& request,
                            std::string_view preset) {
    object users;
    users[creator] = 100;
    if (preset == "trusted_private_chat") {
        for (const auto& invitee : request.invite) users[invitee] = 100;
    }
    object events;
    events["m.room.name"] = 50;
    events["m.room.power_levels"] = 100;
    events["m.room.history_visibility"] = 100;
    events["m.room.canonical_alias"] = 50;
    events["m.room.avatar"] = 50;
    events["m.room.tombstone"] = 100;
    events["m.room.server_acl"] = 100;
    events["m.room.encryption"] = 100;
    object notifications;
    notifications["room"] = 50;
    object pl;
    pl["users"] = std::move(users);
    pl["users_default"] = 0;
    pl["events"] = std::move(events);
    pl["events_default"] = 0;
    pl["state_default"] = 50;
    pl["ban"] = 50;
    pl["kick"] = 50;
    pl["redact"] = 50;
    pl["invite"] = 0;
    pl["historical"] = 100;
    pl["notifications"] = std::move(notifications);
    if (request.power_level_content_override) {
        for (const auto& [key, value] : *request.power_level_content_override) pl[key] = value;
    }
    return pl;
}

EventDraft state_draft(std::string_view sender, std::string type, std::string state_key,
                       object content) {
    EventDraft d;
    d.sender = std::string(sender);
    d.type = std::move(type);
    d.state_key = std::move(state_key);
    d.content = std::move(content);
    return d;
}

object one_field(std::string_view key, std::string_view value) {
    object o;
    o[key] = value;
    return o;
}

// The events of a new room, in the order the spec gives (createRoom's description).
std::vector<EventDraft> initial_events(std::string_view creator, const CreateRoomRequest& request,
                                       const events::RoomVersion& version,
                                       const std::optional<std::string>& alias) {
    const std::string preset = !request.preset.empty()     ? request.preset
                               : request.visibility_public ? "public_chat"
                                                           : "private_chat";
    std::vector<EventDraft> out;
    object create = request.creation_content;
    create["room_version"] = version.id;
    if (version.creator_in_content) {
        create["creator"] = creator;
    } else {
        create.erase("creator");
    }
    out.push_back(state_draft(creator, "m.room.create", "", std::move(create)));

    object join = one_field("membership", "join");
    join["displayname"] = localpart_of(creator);
    out.push_back(state_draft(creator, "m.room.member", std::string(creator), std::move(join)));
    out.push_back(state_draft(creator, "m.room.power_levels", "",
                              default_power_levels(creator, request, preset)));
    if (alias) {
        out.push_back(
            state_draft(creator, "m.room.canonical_alias", "", one_field("alias", *alias)));
    }

    std::set<std::pair<std::string, std::string>> given;
    for (const auto& s : request.initial_state) given.emplace(s.type, s.state_key);
    const auto preset_event = [&](std::string type, object content) {
        if (given.count({type, ""}) == 0) {
            out.push_back(state_draft(creator, std::move(type), "", std::move(content)));
        }
    };
    preset_event("m.room.join_rules",
                 one_field("join_rule", preset == "public_chat" ? "public" : "invite"));
    preset_event("m.room.history_visibility", one_field("history_visibility", "shared"));
    preset_event("m.room.guest_access",
                 one_field("guest_access", preset == "public_chat" ? "forbidden" : "can_join"));
    for (const auto& s : request.initial_state) {
        out.push_back(state_draft(creator, s.type, s.state_key, s.content));
    }
    if (request.name) {
        out.push_back(state_draft(creator, "m.room.name", "", one_field("name", *request.name)));
    }
    if (request.topic) {
        out.push_back(state_draft(creator, "m.room.topic", "", one_field("topic", *request.topic)));
    }
    for (const auto& invitee : request.invite) {
        object invite = one_field("membership", "invite");
        if (request.is_direct) invite["is_direct"] = true;
        out.push_back(state_draft(creator, "m.room.member", invitee, std::move(invite)));
    }
    return out;
}

// A forbidden initial event makes the whole request invalid.
Error as_invalid_room_state(const Error& e) {
    if (e.status != 403) return e;
    return errors::make(400, "M_INVALID_ROOM_STATE", e.message);
}

// Adds to `wake` the users a new event of the room concerns: its joined members and `subject`
// (a member event's target; empty: none).
Result<void> add_wake_list(storage::ReadTxn& txn, std::string_view room_id,
                           std::string_view subject, std::vector<std::string>& wake) {
    auto members = txn.room_members(room_id);
    if (!members) return members.error();
    for (auto& m : *members) {
        if (m.membership == "join" || m.user_id == subject) wake.push_back(std::move(m.user_id));
    }
    if (!subject.empty() && std::find(wake.begin(), wake.end(), subject) == wake.end()) {
        wake.emplace_back(subject);
    }
    return {};
}

}  // namespace

std::function<void()> RoomService::notify_after(WakeList wake) const {
    UserNotifier* notifier = notifier_;
    return [notifier, wake = std::move(wake)] {
        if (notifier != nullptr && !wake->empty()) notifier->notify(*wake);
    };
}

std::optional<std::int64_t> parse_stream_token(std::string_view token) {
    if (token.size() < 2 || token.size() > 20 || token[0] != 's') return std::nullopt;
    std::int64_t value = 0;
    const auto* first = token.data() + 1;
    const auto* last = token.data() + token.size();
    auto [ptr, ec] = std::from_chars(first, last, value);
    if (ec != std::errc() || ptr != last || value < 0) return std::nullopt;
    return value;
}

std::string stream_token(std::int64_t position) { return "s" + std::to_string(position); }

RoomService::RoomService(storage::Database& db, const Clock& clock, std::string server_name,
                         const events::SigningKey& key)
    : db_(db),
      clock_(clock),
      server_name_(server_name),
      builder_(std::move(server_name), key, clock) {}

Async<std::string> RoomService::create_room(Actor actor, CreateRoomRequest request) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [this, actor = std::move(actor), request = std::move(request),
                wake](storage::WriteTxn& txn) -> Result<std::string> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        const events::RoomVersion* version = events::find_room_version(
            request.room_version.empty() ? events::kDefaultRoomVersion : request.room_version);
        if (version == nullptr) {
            return errors::make(400, "M_UNSUPPORTED_ROOM_VERSION",
                                "This server does not support that room version");
        }
        std::optional<std::string> alias;
        if (request.room_alias_name) {
            alias = "#" + *request.room_alias_name + ":" + server_name_;
            auto taken = txn.find_room_alias(*alias);
            if (!taken) return taken.error();
            if (*taken) return errors::make(400, "M_ROOM_IN_USE", "Room alias already taken");
        }
        storage::RoomRecord room;
        room.room_id = generate_room_id(server_name_);
        room.room_version = std::string(version->id);
        room.creator = actor.user_id;
        room.created_ts = clock_.now_ms();
        room.is_public = request.visibility_public;
        auto inserted = txn.insert_room(room);
        if (!inserted) return inserted.error();
        if (!*inserted) return errors::unavailable("Room ID collision; try again");
        for (const auto& draft : initial_events(actor.user_id, request, *version, alias)) {
            auto appended = builder_.append(txn, room, draft);
            if (!appended) return as_invalid_room_state(appended.error());
        }
        if (alias) {
            storage::RoomAliasRecord record{*alias, room.room_id, actor.user_id, room.created_ts};
            auto added = txn.insert_room_alias(record);
            if (!added) return added.error();
        }
        // The creator and the invitees.
        auto members = txn.room_members(room.room_id);
        if (!members) return members.error();
        for (auto& m : *members) wake->push_back(std::move(m.user_id));
        return room.room_id;
    };
    return storage::write<std::string>(db_, std::move(job), notify_after(wake),
                                       storage::kEventsCounter);
}

Async<std::string> RoomService::send(Actor actor, std::string room_id, std::string type,
                                     std::optional<std::string> state_key, object content,
                                     std::optional<std::string> txn_id) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [this, actor = std::move(actor), room_id = std::move(room_id),
                type = std::move(type), state_key = std::move(state_key),
                content = std::move(content), txn_id = std::move(txn_id),
                wake](storage::WriteTxn& txn) -> Result<std::string> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        const std::string txn_key = txn_id ? "send/" + *txn_id : std::string();
        if (txn_id) {
            auto earlier = txn.find_transaction(actor.user_id, actor.device_id, room_id, txn_key);
            if (!earlier) return earlier.error();
            if (*earlier) return std::move(**earlier);
        }
        auto room = find_room_or(txn, room_id, not_member());
        if (!room) return room.error();
        EventDraft draft;
        draft.sender = actor.user_id;
        draft.type = type;
        draft.state_key = state_key;
        draft.content = content;
        auto appended = builder_.append(txn, *room, draft);
        if (!appended) return appended.error();
        if (txn_id) {
            storage::TransactionRecord record{actor.user_id, actor.device_id,    room_id,
                                              txn_key,       appended->event_id, clock_.now_ms()};
            auto stored = txn.insert_transaction(record);
            if (!stored) return stored.error();
        }
        const bool member_event = type == "m.room.member" && state_key;
        auto woken = add_wake_list(txn, room_id, member_event ? *state_key : std::string(), *wake);
        if (!woken) return woken.error();
        return std::move(appended->event_id);
    };
    return storage::write<std::string>(db_, std::move(job), notify_after(wake),
                                       storage::kEventsCounter);
}

Async<std::string> RoomService::redact(Actor actor, std::string room_id, std::string event_id,
                                       std::optional<std::string> reason, std::string txn_id) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [this, actor = std::move(actor), room_id = std::move(room_id),
                event_id = std::move(event_id), reason = std::move(reason),
                txn_id = std::move(txn_id), wake](storage::WriteTxn& txn) -> Result<std::string> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        const std::string txn_key = "redact/" + txn_id;
        auto earlier = txn.find_transaction(actor.user_id, actor.device_id, room_id, txn_key);
        if (!earlier) return earlier.error();
        if (*earlier) return std::move(**earlier);
        auto room = find_room_or(txn, room_id, not_member());
        if (!room) return room.error();
        EventDraft draft;
        draft.sender = actor.user_id;
        draft.type = "m.room.redaction";
        if (reason) draft.content["reason"] = *reason;
        draft.redacts = event_id;
        auto appended = builder_.append(txn, *room, draft);
        if (!appended) return appended.error();
        storage::TransactionRecord record{actor.user_id, actor.device_id,    room_id,
                                          txn_key,       appended->event_id, clock_.now_ms()};
        auto stored = txn.insert_transaction(record);
        if (!stored) return stored.error();
        auto woken = add_wake_list(txn, room_id, "", *wake);
        if (!woken) return woken.error();
        return std::move(appended->event_id);
    };
    return storage::write<std::string>(db_, std::move(job), notify_after(wake),
                                       storage::kEventsCounter);
}

Async<std::string> RoomService::membership(Actor actor, std::string room_id,
                                           MembershipAction action, std::string target,
                                           std::optional<std::string> reason) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [this, actor = std::move(actor), room_id = std::move(room_id), action,
                target = std::move(target), reason = std::move(reason),
                wake](storage::WriteTxn& txn) -> Result<std::string> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        const bool self = action == MembershipAction::kJoin || action == MembershipAction::kLeave;
        const std::string& subject = self ? actor.user_id : target;
        if (!events::is_valid_user_id(subject)) {
            return errors::invalid_param("user_id is not a valid user ID");
        }
        auto room = find_room_or(
            txn, room_id,
            action == MembershipAction::kJoin ? errors::not_found("No such room") : not_member());
        if (!room) return room.error();
        if (action == MembershipAction::kKick || action == MembershipAction::kUnban) {
            auto current = txn.find_membership(room_id, target);
            if (!current) return current.error();
            const std::string now = *current ? (*current)->membership : std::string("leave");
            if (action == MembershipAction::kUnban && now != "ban") {
                return errors::forbidden("The user is not banned from this room");
            }
            if (action == MembershipAction::kKick && now != "join" && now != "invite" &&
                now != "knock") {
                return errors::forbidden("The user is not in this room");
            }
        }
        std::string_view membership = "leave";
        switch (action) {
            case MembershipAction::kJoin:
                membership = "join";
                break;
            case MembershipAction::kInvite:
                membership = "invite";
                break;
            case MembershipAction::kBan:
                membership = "ban";
                break;
            case MembershipAction::kLeave:
            case MembershipAction::kKick:
            case MembershipAction::kUnban:
                break;
        }
        object content = one_field("membership", membership);
        if (action == MembershipAction::kJoin) content["displayname"] = localpart_of(subject);
        if (reason) content["reason"] = *reason;
        EventDraft draft = state_draft(actor.user_id, "m.room.member", subject, std::move(content));
        auto appended = builder_.append(txn, *room, draft);
        if (!appended) return appended.error();
        auto woken = add_wake_list(txn, room_id, subject, *wake);
        if (!woken) return woken.error();
        return std::move(appended->event_id);
    };
    return storage::write<std::string>(db_, std::move(job), notify_after(wake),
                                       storage::kEventsCounter);
}

Async<std::string> RoomService::join_by_id_or_alias(Actor actor, std::string room_id_or_alias,
                                                    std::optional<std::string> reason) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [this, actor = std::move(actor), id = std::move(room_id_or_alias),
                reason = std::move(reason), wake](storage::WriteTxn& txn) -> Result<std::string> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        std::string room_id = id;
        if (!id.empty() && id[0] == '#') {
            auto alias = txn.find_room_alias(id);
            if (!alias) return alias.error();
            if (!*alias) return errors::not_found("Room alias not found");
            room_id = (*alias)->room_id;
        } else if (id.empty() || id[0] != '!') {
            return errors::invalid_param("Expected a room ID or a room alias");
        }
        auto room = find_room_or(txn, room_id, errors::not_found("No such room"));
        if (!room) return room.error();
        object content = one_field("membership", "join");
        content["displayname"] = localpart_of(actor.user_id);
        if (reason) content["reason"] = *reason;
        EventDraft draft =
            state_draft(actor.user_id, "m.room.member", actor.user_id, std::move(content));
        auto appended = builder_.append(txn, *room, draft);
        if (!appended) return appended.error();
        auto woken = add_wake_list(txn, room_id, actor.user_id, *wake);
        if (!woken) return woken.error();
        return room_id;
    };
    return storage::write<std::string>(db_, std::move(job), notify_after(wake),
                                       storage::kEventsCounter);
}

Async<void> RoomService::forget(Actor actor, std::string room_id) {
    auto job = [actor = std::move(actor),
                room_id = std::move(room_id)](storage::WriteTxn& txn) -> Result<void> {
        auto m = txn.find_membership(room_id, actor.user_id);
        if (!m) return m.error();
        if (!*m) return errors::not_found("You were never a member of this room");
        if ((*m)->membership == "join" || (*m)->membership == "invite") {
            return errors::make(400, "M_UNKNOWN", "You must leave the room before forgetting it");
        }
        auto forgotten = txn.forget_room(room_id, actor.user_id);
        if (!forgotten) return forgotten.error();
        return {};
    };
    return storage::write<void>(db_, std::move(job));
}

Async<object> RoomService::state_event(Actor actor, std::string room_id, std::string type,
                                       std::string state_key, bool whole_event) {
    auto job = [actor = std::move(actor), room_id = std::move(room_id), type = std::move(type),
                state_key = std::move(state_key),
                whole_event](storage::ReadTxn& txn) -> Result<object> {
        auto access = joined_access(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto found = txn.state_event(room_id, type, state_key);
        if (!found) return found.error();
        if (!*found) return errors::not_found("Event not found");
        auto ce = client_event_with_redaction(txn, **found);
        if (!ce) return ce.error();
        if (whole_event) return std::move(*ce);
        return std::move((*ce)["content"].as_object());
    };
    return storage::read<object>(db_, std::move(job));
}

Async<array> RoomService::state(Actor actor, std::string room_id) {
    auto job = [actor = std::move(actor),
                room_id = std::move(room_id)](storage::ReadTxn& txn) -> Result<array> {
        auto access = joined_access(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto events = txn.state_events(room_id);
        if (!events) return events.error();
        return client_events(txn, *events);
    };
    return storage::read<array>(db_, std::move(job));
}

Async<object> RoomService::event(Actor actor, std::string room_id, std::string event_id) {
    auto job = [actor = std::move(actor), room_id = std::move(room_id),
                event_id = std::move(event_id)](storage::ReadTxn& txn) -> Result<object> {
        auto access = access_of(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto found = txn.find_event(event_id);
        if (!found) return found.error();
        if (!*found || (*found)->room_id != room_id || (*found)->stream_ordering > access->upto) {
            return errors::not_found("Event not found");
        }
        return client_event_with_redaction(txn, **found);
    };
    return storage::read<object>(db_, std::move(job));
}

namespace {

bool matches_filter(const storage::EventRecord& e, const MessagesRequest& r) {
    const auto in = [](const std::vector<std::string>& list, std::string_view value) {
        for (const auto& pattern : list) {
            if (pattern == value) return true;
            if (!pattern.empty() && pattern.back() == '*' &&
                value.substr(0, pattern.size() - 1) ==
                    std::string_view(pattern).substr(0, pattern.size() - 1)) {
                return true;
            }
        }
        return false;
    };
    if (r.types && !in(*r.types, e.type)) return false;
    if (in(r.not_types, e.type)) return false;
    if (r.senders && !in(*r.senders, e.sender)) return false;
    if (in(r.not_senders, e.sender)) return false;
    return true;
}

}  // namespace

Async<object> RoomService::messages(Actor actor, std::string room_id, MessagesRequest request) {
    auto job = [actor = std::move(actor), room_id = std::move(room_id),
                request = std::move(request)](storage::ReadTxn& txn) -> Result<object> {
        std::optional<std::int64_t> from;
        std::optional<std::int64_t> to;
        if (request.from) {
            from = parse_stream_token(*request.from);
            if (!from) return errors::invalid_param("Unknown pagination token in 'from'");
        }
        if (request.to) {
            to = parse_stream_token(*request.to);
            if (!to) return errors::invalid_param("Unknown pagination token in 'to'");
        }
        auto access = access_of(txn, room_id, actor.user_id);
        if (!access) return access.error();
        const int limit = std::clamp(request.limit, 1, 1000);

        // The window (after, upto] still to read, and the position where the answer starts.
        std::int64_t after = 0;
        std::int64_t upto = access->upto;
        std::int64_t start = 0;
        if (request.backwards) {
            if (from) upto = std::min(*from, upto);
            if (to) after = std::max<std::int64_t>(*to, 0);
            start = from ? *from : upto;
        } else {
            if (from) after = *from;
            if (to) upto = std::min(*to, upto);
            start = from ? *from : 0;
        }
        std::vector<storage::EventRecord> chunk;
        bool more = false;
        for (int batch = 0; batch < kMaxFilteredBatches && after < upto; ++batch) {
            auto events = txn.room_events(
                room_id, storage::EventRange{after, upto, request.backwards, limit});
            if (!events) return events.error();
            for (auto& e : *events) {
                if (request.backwards) {
                    upto = e.stream_ordering - 1;
                } else {
                    after = e.stream_ordering;
                }
                if (matches_filter(e, request)) chunk.push_back(std::move(e));
                if (static_cast<int>(chunk.size()) == limit) break;
            }
            more = static_cast<int>(events->size()) == limit && after < upto;
            if (static_cast<int>(chunk.size()) == limit || !more) break;
        }
        auto chunk_json = client_events(txn, chunk);
        if (!chunk_json) return chunk_json.error();
        object out;
        out["start"] = stream_token(start);
        out["chunk"] = std::move(*chunk_json);
        if (more) out["end"] = stream_token(request.backwards ? upto : after);
        return out;
    };
    return storage::read<object>(db_, std::move(job));
}

Async<object> RoomService::context(Actor actor, std::string room_id, std::string event_id,
                                   int limit) {
    auto job = [actor = std::move(actor), room_id = std::move(room_id),
                event_id = std::move(event_id), limit](storage::ReadTxn& txn) -> Result<object> {
        auto access = access_of(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto found = txn.find_event(event_id);
        if (!found) return found.error();
        if (!*found || (*found)->room_id != room_id || (*found)->stream_ordering > access->upto) {
            return errors::not_found("Event not found");
        }
        const std::int64_t pos = (*found)->stream_ordering;
        const int total = std::clamp(limit, 0, 100);
        const int before_n = total / 2;
        const int after_n = total - before_n;
        auto before = txn.room_events(room_id, storage::EventRange{0, pos - 1, true, before_n});
        if (!before) return before.error();
        auto after =
            txn.room_events(room_id, storage::EventRange{pos, access->upto, false, after_n});
        if (!after) return after.error();
        auto event_json = client_event_with_redaction(txn, **found);
        if (!event_json) return event_json.error();
        auto before_json = client_events(txn, *before);
        if (!before_json) return before_json.error();
        auto after_json = client_events(txn, *after);
        if (!after_json) return after_json.error();
        object out;
        out["event"] = std::move(*event_json);
        out["events_before"] = std::move(*before_json);
        out["events_after"] = std::move(*after_json);
        out["start"] = stream_token(before->empty() ? pos - 1 : before->back().stream_ordering - 1);
        out["end"] = stream_token(after->empty() ? pos : after->back().stream_ordering);
        array state;
        if (access->joined) {
            auto events = txn.state_events(room_id);
            if (!events) return events.error();
            auto state_json = client_events(txn, *events);
            if (!state_json) return state_json.error();
            state = std::move(*state_json);
        }
        out["state"] = std::move(state);
        return out;
    };
    return storage::read<object>(db_, std::move(job));
}

Async<array> RoomService::members(Actor actor, std::string room_id,
                                  std::optional<std::string> membership,
                                  std::optional<std::string> not_membership) {
    auto job =
        [actor = std::move(actor), room_id = std::move(room_id), membership = std::move(membership),
         not_membership = std::move(not_membership)](storage::ReadTxn& txn) -> Result<array> {
        auto access = joined_access(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto rows = txn.room_members(room_id);
        if (!rows) return rows.error();
        array out;
        for (const auto& m : *rows) {
            if (membership && m.membership != *membership) continue;
            if (not_membership && m.membership == *not_membership) continue;
            auto e = txn.find_event(m.event_id);
            if (!e) return e.error();
            if (!*e) continue;
            auto ce = client_event_with_redaction(txn, **e);
            if (!ce) return ce.error();
            out.emplace_back(std::move(*ce));
        }
        return out;
    };
    return storage::read<array>(db_, std::move(job));
}

Async<object> RoomService::joined_members(Actor actor, std::string room_id) {
    auto job = [actor = std::move(actor),
                room_id = std::move(room_id)](storage::ReadTxn& txn) -> Result<object> {
        auto access = joined_access(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto rows = txn.room_members(room_id);
        if (!rows) return rows.error();
        object joined;
        for (const auto& m : *rows) {
            if (m.membership != "join") continue;
            object member;
            auto e = txn.find_event(m.event_id);
            if (!e) return e.error();
            if (*e) {
                auto pdu = stored_pdu(**e);
                if (!pdu) return pdu.error();
                const auto* content = pdu->if_contains("content");
                if (content != nullptr && content->is_object()) {
                    const auto& c = content->as_object();
                    if (const auto* d = c.if_contains("displayname"); d && d->is_string()) {
                        member["display_name"] = *d;
                    }
                    if (const auto* a = c.if_contains("avatar_url"); a && a->is_string()) {
                        member["avatar_url"] = *a;
                    }
                }
            }
            joined[m.user_id] = std::move(member);
        }
        object out;
        out["joined"] = std::move(joined);
        return out;
    };
    return storage::read<object>(db_, std::move(job));
}

Async<std::vector<std::string>> RoomService::joined_rooms(std::string user_id) {
    auto job = [user_id =
                    std::move(user_id)](storage::ReadTxn& txn) -> Result<std::vector<std::string>> {
        auto rows = txn.user_memberships(user_id);
        if (!rows) return rows.error();
        std::vector<std::string> out;
        for (const auto& m : *rows) {
            if (m.membership == "join") out.push_back(m.room_id);
        }
        return out;
    };
    return storage::read<std::vector<std::string>>(db_, std::move(job));
}

Async<void> RoomService::create_alias(Actor actor, std::string alias, std::string room_id) {
    auto job = [this, actor = std::move(actor), alias = std::move(alias),
                room_id = std::move(room_id)](storage::WriteTxn& txn) -> Result<void> {
        if (alias.size() < 3 || alias[0] != '#' || alias.size() > 255 ||
            events::server_name_of(alias) != server_name_ || alias.find(':') == 1) {
            return errors::invalid_param("The alias must be #name:" + server_name_);
        }
        auto room = find_room_or(txn, room_id, errors::not_found("No such room"));
        if (!room) return room.error();
        storage::RoomAliasRecord record{alias, room_id, actor.user_id, clock_.now_ms()};
        auto added = txn.insert_room_alias(record);
        if (!added) return added.error();
        if (!*added) return errors::make(409, "M_UNKNOWN", "Room alias already exists");
        return {};
    };
    return storage::write<void>(db_, std::move(job));
}

Async<std::string> RoomService::resolve_alias(std::string alias) {
    auto job = [alias = std::move(alias)](storage::ReadTxn& txn) -> Result<std::string> {
        auto found = txn.find_room_alias(alias);
        if (!found) return found.error();
        if (!*found) return errors::not_found("Room alias not found");
        return std::move((*found)->room_id);
    };
    return storage::read<std::string>(db_, std::move(job));
}

Async<void> RoomService::delete_alias(Actor actor, std::string alias) {
    auto job = [actor = std::move(actor),
                alias = std::move(alias)](storage::WriteTxn& txn) -> Result<void> {
        auto found = txn.find_room_alias(alias);
        if (!found) return found.error();
        if (!*found) return errors::not_found("Room alias not found");
        if ((*found)->creator != actor.user_id) {
            // Otherwise: a joined member allowed to change the room's canonical alias.
            auto allowed = may_manage_directory(txn, (*found)->room_id, actor.user_id);
            if (!allowed) return allowed.error();
            if (!*allowed) return errors::forbidden("You may not delete this alias");
        }
        auto deleted = txn.delete_room_alias(alias);
        if (!deleted) return deleted.error();
        return {};
    };
    return storage::write<void>(db_, std::move(job));
}

Async<std::vector<std::string>> RoomService::room_aliases(Actor actor, std::string room_id) {
    auto job = [actor = std::move(actor), room_id = std::move(room_id)](
                   storage::ReadTxn& txn) -> Result<std::vector<std::string>> {
        auto access = joined_access(txn, room_id, actor.user_id);
        if (!access) return access.error();
        auto aliases = txn.room_aliases(room_id);
        if (!aliases) return aliases.error();
        std::vector<std::string> out;
        for (auto& a : *aliases) out.push_back(std::move(a.alias));
        return out;
    };
    return storage::read<std::vector<std::string>>(db_, std::move(job));
}

Async<bool> RoomService::room_visibility(std::string room_id) {
    auto job = [room_id = std::move(room_id)](storage::ReadTxn& txn) -> Result<bool> {
        auto room = find_room_or(txn, room_id, errors::not_found("No such room"));
        if (!room) return room.error();
        return room->is_public;
    };
    return storage::read<bool>(db_, std::move(job));
}

Async<void> RoomService::set_room_visibility(Actor actor, std::string room_id, bool is_public) {
    auto job = [actor = std::move(actor), room_id = std::move(room_id),
                is_public](storage::WriteTxn& txn) -> Result<void> {
        auto room = find_room_or(txn, room_id, errors::not_found("No such room"));
        if (!room) return room.error();
        auto allowed = may_manage_directory(txn, room_id, actor.user_id);
        if (!allowed) return allowed.error();
        if (!*allowed) return errors::forbidden("You may not change this room's listing");
        auto set = txn.set_room_public(room_id, is_public);
        if (!set) return set.error();
        return {};
    };
    return storage::write<void>(db_, std::move(job));
}

Async<object> RoomService::public_rooms(int limit, std::optional<std::string> since) {
    auto job = [limit, since = std::move(since)](storage::ReadTxn& txn) -> Result<object> {
        std::string after;
        if (since) {
            if (since->size() < 2 || (*since)[0] != 'r') {
                return errors::invalid_param("Unknown pagination token in 'since'");
            }
            after = since->substr(1);
        }
        const int n = std::clamp(limit, 1, 500);
        auto rooms = txn.public_rooms(after, n + 1);
        if (!rooms) return rooms.error();
        array chunk;
        const std::size_t shown = std::min<std::size_t>(rooms->size(), static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < shown; ++i) {
            const auto& room = (*rooms)[i];
            object entry;
            entry["room_id"] = room.room_id;
            std::int64_t joined = 0;
            auto members = txn.room_members(room.room_id);
            if (!members) return members.error();
            for (const auto& m : *members) joined += m.membership == "join" ? 1 : 0;
            entry["num_joined_members"] = joined;
            entry["world_readable"] = false;
            entry["guest_can_join"] = false;
            entry["join_rule"] = "invite";
            auto state = txn.state_events(room.room_id);
            if (!state) return state.error();
            for (const auto& e : *state) {
                auto pdu = stored_pdu(e);
                if (!pdu) return pdu.error();
                const auto& content =
                    pdu->if_contains("content") != nullptr && pdu->at("content").is_object()
                        ? pdu->at("content").as_object()
                        : object();
                const auto text = [&](std::string_view key) -> std::optional<std::string> {
                    const auto* v = content.if_contains(key);
                    if (v == nullptr || !v->is_string()) return std::nullopt;
                    return std::string(v->as_string());
                };
                if (e.type == "m.room.name") {
                    if (auto v = text("name")) entry["name"] = *v;
                } else if (e.type == "m.room.topic") {
                    if (auto v = text("topic")) entry["topic"] = *v;
                } else if (e.type == "m.room.canonical_alias") {
                    if (auto v = text("alias")) entry["canonical_alias"] = *v;
                } else if (e.type == "m.room.avatar") {
                    if (auto v = text("url")) entry["avatar_url"] = *v;
                } else if (e.type == "m.room.join_rules") {
                    if (auto v = text("join_rule")) entry["join_rule"] = *v;
                } else if (e.type == "m.room.history_visibility") {
                    entry["world_readable"] = text("history_visibility") == "world_readable";
                } else if (e.type == "m.room.guest_access") {
                    entry["guest_can_join"] = text("guest_access") == "can_join";
                }
            }
            chunk.emplace_back(std::move(entry));
        }
        object out;
        out["chunk"] = std::move(chunk);
        if (rooms->size() > shown) out["next_batch"] = "r" + (*rooms)[shown - 1].room_id;
        out["total_room_count_estimate"] = static_cast<std::int64_t>(shown);
        return out;
    };
    return storage::read<object>(db_, std::move(job));
}

}  // namespace myelin::service
