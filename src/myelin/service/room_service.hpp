#pragma once

// Rooms for clients (issue #8 §2): creating rooms, sending message and state events, membership
// (join, leave, invite, kick, ban, unban, forget), redaction, reading state, history
// (/messages, /context, /event), members, local aliases and the public room directory.
//
// Every change is one storage write job that reads what it needs, builds the event with
// EventBuilder (prev_events, auth_events, authorization rules, hash, signature, event ID) and
// appends it, so events of a room are ordered and consistent under any concurrency, and no
// hashing or signing runs on a network thread. Reads are read jobs.
//
// Who may read: members whose membership is "join" see the room's current state and all of its
// history; members who left or were banned see the history up to their leave (not the state:
// this server keeps no past state yet); anyone else gets 403 M_FORBIDDEN, also for rooms that
// do not exist (nothing tells an outsider whether a room exists).
//
// Thread-safety: the service is immutable after construction; its coroutines may run on any
// network thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/events/signing_key.hpp"
#include "myelin/service/event_builder.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

template <typename T>
using Async = boost::asio::awaitable<Result<T>>;

// One entry of createRoom's initial_state.
struct InitialStateEvent {
    std::string type;
    std::string state_key;
    boost::json::object content;
};

// POST /createRoom, decoded (api/client/rooms.cpp checks the shapes).
struct CreateRoomRequest {
    std::string preset;  // "private_chat", "trusted_private_chat", "public_chat"; empty:
                         // from visibility
    bool visibility_public = false;
    std::string room_version;  // empty: the default (10)
    std::optional<std::string> name;
    std::optional<std::string> topic;
    std::optional<std::string> room_alias_name;
    std::vector<std::string> invite;
    bool is_direct = false;
    boost::json::object creation_content;
    std::vector<InitialStateEvent> initial_state;
    std::optional<boost::json::object> power_level_content_override;
};

// Who acts: the user and the device of the access token.
struct Actor {
    std::string user_id;
    std::string device_id;
};

// The membership endpoints.
enum class MembershipAction { kJoin, kLeave, kInvite, kKick, kBan, kUnban };

// GET /rooms/{roomId}/messages, decoded.
struct MessagesRequest {
    std::optional<std::string> from;  // a pagination token; absent: the newest (b) or oldest (f)
    std::optional<std::string> to;
    bool backwards = true;
    int limit = 10;
    // A RoomEventFilter's simple parts (absent: everything).
    std::optional<std::vector<std::string>> types;
    std::vector<std::string> not_types;
    std::optional<std::vector<std::string>> senders;
    std::vector<std::string> not_senders;
};

class RoomService {
public:
    RoomService(storage::Database& db, const Clock& clock, std::string server_name,
                const events::SigningKey& key);

    // Creates a room (spec createRoom: create, creator's join, power levels, canonical alias,
    // preset events, initial_state, name, topic, invites, all in one write job) and returns its
    // ID. Errors: 400 M_UNSUPPORTED_ROOM_VERSION, M_INVALID_PARAM (bad invitee, alias name or
    // preset), M_ROOM_IN_USE (alias taken), M_INVALID_ROOM_STATE (an initial event the rules
    // refuse), M_BAD_JSON (content that is not canonical JSON), 413, 503.
    Async<std::string> create_room(Actor actor, CreateRoomRequest request);

    // Sends a message event (state_key absent) or a state event and returns its ID. With a
    // txn_id, a retry from the same device gets the first event's ID and sends nothing.
    // Errors: those of EventBuilder::append (403 not joined or below the power level, 413,
    // 400), 503.
    Async<std::string> send(Actor actor, std::string room_id, std::string type,
                            std::optional<std::string> state_key, boost::json::object content,
                            std::optional<std::string> txn_id);

    // Redacts `event_id` (PUT .../redact/{eventId}/{txnId}); returns the redaction's ID.
    // Idempotent per transaction as send(). Errors: 403, 404 (no such event in the room), 503.
    Async<std::string> redact(Actor actor, std::string room_id, std::string event_id,
                              std::optional<std::string> reason, std::string txn_id);

    // Changes a membership; returns the member event's ID. `target` is ignored for join and
    // leave (the actor). Unban needs a banned target, kick a target that is joined, invited or
    // knocking (403 otherwise); the rest is the authorization rules' (403 M_FORBIDDEN naming
    // the reason). Errors: 404 M_NOT_FOUND (join: unknown room), 400 M_INVALID_PARAM (target not
    // a user ID), 503.
    Async<std::string> membership(Actor actor, std::string room_id, MembershipAction action,
                                  std::string target, std::optional<std::string> reason);

    // Joins a room by ID or local alias; returns the room ID. Errors: those of membership(),
    // 404 M_NOT_FOUND (unknown alias, or an alias of another server).
    Async<std::string> join_by_id_or_alias(Actor actor, std::string room_id_or_alias,
                                           std::optional<std::string> reason);

    // Forgets a room the user has left. Errors: 400 M_UNKNOWN (still joined or invited), 404
    // M_NOT_FOUND (never a member), 503.
    Async<void> forget(Actor actor, std::string room_id);

    // The content of the current state event (format=event: the whole client event). Errors:
    // 403 (not joined), 404 M_NOT_FOUND (no such state), 503.
    Async<boost::json::object> state_event(Actor actor, std::string room_id, std::string type,
                                           std::string state_key, bool whole_event);
    // The room's current state events (client format). Errors: 403, 503.
    Async<boost::json::array> state(Actor actor, std::string room_id);
    // One event (client format), if the user may see it. Errors: 404 M_NOT_FOUND, 403, 503.
    Async<boost::json::object> event(Actor actor, std::string room_id, std::string event_id);
    // /messages: {start, end?, chunk}. Errors: 400 M_INVALID_PARAM (token), 403, 503.
    Async<boost::json::object> messages(Actor actor, std::string room_id, MessagesRequest request);
    // /context: {event, events_before, events_after, start, end, state}. Errors: 404, 403, 503.
    Async<boost::json::object> context(Actor actor, std::string room_id, std::string event_id,
                                       int limit);
    // /members: the member events, optionally only of / not of one membership. Errors: 403, 503.
    Async<boost::json::array> members(Actor actor, std::string room_id,
                                      std::optional<std::string> membership,
                                      std::optional<std::string> not_membership);
    // /joined_members: {user_id: {display_name?, avatar_url?}}. Errors: 403, 503.
    Async<boost::json::object> joined_members(Actor actor, std::string room_id);
    // The IDs of the rooms the user is joined to.
    Async<std::vector<std::string>> joined_rooms(std::string user_id);

    // Local aliases. Create: 400 M_INVALID_PARAM (not a local alias), 404 (unknown room), 409
    // M_UNKNOWN (taken). Resolve: the room ID; 404. Delete: by the alias's creator or a member
    // at the canonical alias level; 404, 403.
    Async<void> create_alias(Actor actor, std::string alias, std::string room_id);
    Async<std::string> resolve_alias(std::string alias);
    Async<void> delete_alias(Actor actor, std::string alias);

    // The local aliases of a room (GET /rooms/{roomId}/aliases). Errors: 403 (not joined), 503.
    Async<std::vector<std::string>> room_aliases(Actor actor, std::string room_id);
    // Whether the room is listed in the public directory. Errors: 404 (no such room), 503.
    Async<bool> room_visibility(std::string room_id);
    // Lists the room in (or removes it from) the directory: joined members at the
    // m.room.canonical_alias level. Errors: 403, 404 (no such room), 503.
    Async<void> set_room_visibility(Actor actor, std::string room_id, bool is_public);

    // GET /publicRooms: {chunk, next_batch?, total_room_count_estimate}. `since` is a
    // next_batch this returned. Errors: 400 M_INVALID_PARAM (since), 503.
    Async<boost::json::object> public_rooms(int limit, std::optional<std::string> since);

    const EventBuilder& builder() const { return builder_; }

    // Wakes the long-polls (/sync) of the users an event concerns once it is committed: the
    // room's joined members and a member event's subject. nullptr (the default): nobody is
    // woken. Set before serving; `notifier` must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    using WakeList = std::shared_ptr<std::vector<std::string>>;
    // The after-commit step that notifies the users in `wake` (filled by the write job).
    std::function<void()> notify_after(WakeList wake) const;

    storage::Database& db_;
    const Clock& clock_;
    std::string server_name_;
    EventBuilder builder_;
    UserNotifier* notifier_ = nullptr;
};

// Pagination tokens: "s" + a stream position. nullopt when `token` is not one.
[[nodiscard]] std::optional<std::int64_t> parse_stream_token(std::string_view token);
[[nodiscard]] std::string stream_token(std::int64_t position);

}  // namespace myelin::service
