#include "myelin/service/sync_service.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include <boost/json/parse.hpp>

#include "myelin/service/client_events.hpp"
#include "myelin/service/push_rules.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

namespace {

using boost::json::array;
using boost::json::object;

constexpr int kMaxTimelineLimit = 1000;
// A sync reads at most this many batches of `limit + 1` events per room to fill a filtered
// timeline; the timeline is `limited` after that.
constexpr int kMaxTimelineBatches = 10;
constexpr int kMaxToDevicePerSync = 100;
constexpr int kMaxAccountDataPerSync = 1000;
constexpr int kMaxDeviceListChangesPerSync = 1000;
// An incremental sync whose gap holds at most this many stream positions first asks storage
// which rooms have events in it (one primary-key range) and skips the other joined rooms instead
// of reading one range per room (a round trip each on PostgreSQL: bench/README.md, "/sync").
constexpr std::int64_t kMaxGapForRoomFilter = 10'000;

// The state types a stripped invite state carries (besides the invite itself).
constexpr std::string_view kStrippedStateTypes[] = {
    "m.room.create",          "m.room.name",       "m.room.topic",      "m.room.avatar",
    "m.room.canonical_alias", "m.room.join_rules", "m.room.encryption",
};

// A stored JSON object (account data, to-device content, filters); an empty object when the
// text is not one (storage only holds what the handlers checked).
object json_object_or_empty(std::string_view text) {
    boost::system::error_code ec;
    auto value = boost::json::parse(text, ec);
    if (ec || !value.is_object()) return object{};
    return std::move(value.get_object());
}

std::optional<std::vector<std::string>> strings_at(const object& obj, std::string_view key) {
    const auto* v = obj.if_contains(key);
    if (v == nullptr || !v->is_array()) return std::nullopt;
    std::vector<std::string> out;
    for (const auto& item : v->get_array()) {
        if (item.is_string()) out.emplace_back(item.get_string());
    }
    return out;
}

const object* object_at(const object& obj, std::string_view key) {
    const auto* v = obj.if_contains(key);
    if (v == nullptr) return nullptr;
    return v->if_object();
}

// Whether `value` is in `patterns` (a trailing "*" matches any rest).
bool listed(const std::vector<std::string>& patterns, std::string_view value) {
    for (const auto& p : patterns) {
        if (p == value) return true;
        if (!p.empty() && p.back() == '*' &&
            value.substr(0, p.size() - 1) == std::string_view(p).substr(0, p.size() - 1)) {
            return true;
        }
    }
    return false;
}

bool timeline_wants(const SyncFilter& f, const storage::EventRecord& e) {
    if (f.timeline_types && !listed(*f.timeline_types, e.type)) return false;
    if (listed(f.timeline_not_types, e.type)) return false;
    if (f.timeline_senders && !listed(*f.timeline_senders, e.sender)) return false;
    if (listed(f.timeline_not_senders, e.sender)) return false;
    return true;
}

// The content.membership of a stored m.room.member event ("" if it has none).
std::string membership_of(const storage::EventRecord& e) {
    const object pdu = json_object_or_empty(e.json);
    const object* content = object_at(pdu, "content");
    if (content == nullptr) return {};
    const auto* membership = content->if_contains("membership");
    if (membership == nullptr || !membership->is_string()) return {};
    return std::string(membership->get_string());
}

bool room_wanted(const SyncFilter& f, std::string_view room_id) {
    if (f.rooms && std::find(f.rooms->begin(), f.rooms->end(), room_id) == f.rooms->end()) {
        return false;
    }
    return std::find(f.not_rooms.begin(), f.not_rooms.end(), room_id) == f.not_rooms.end();
}

// A stored event in sync's format (ClientEventWithoutRoomID), redacted_because included.
Result<object> sync_event(storage::ReadTxn& txn, const storage::EventRecord& e) {
    Result<object> out = client_event(e);
    if (!e.redacted_by.empty()) {
        auto redaction = txn.find_event(e.redacted_by);
        if (!redaction) return redaction.error();
        if (*redaction) {
            auto because = client_event(**redaction);
            if (!because) return because.error();
            out = client_event(e, &*because);
        }
    }
    if (!out) return out.error();
    out->erase("room_id");
    return out;
}

Result<array> sync_events(storage::ReadTxn& txn, const std::vector<storage::EventRecord>& events) {
    array out;
    out.reserve(events.size());
    for (const auto& e : events) {
        auto one = sync_event(txn, e);
        if (!one) return one.error();
        out.emplace_back(std::move(*one));
    }
    return out;
}

struct Timeline {
    std::vector<storage::EventRecord> events;  // oldest first
    bool limited = false;
    bool any = false;  // events (filtered out or not) were found in the window
    std::int64_t prev_batch = 0;
};

// The last `limit` events of the room within (after, upto] that the filter wants.
Result<Timeline> pick_timeline(storage::ReadTxn& txn, std::string_view room_id, std::int64_t after,
                               std::int64_t upto, const SyncFilter& filter) {
    Timeline t;
    const int limit = filter.timeline_limit;
    std::int64_t cursor = upto;
    bool exhausted = false;
    for (int batch = 0; batch < kMaxTimelineBatches && cursor > after; ++batch) {
        auto events = txn.room_events(room_id, storage::EventRange{after, cursor, true, limit + 1});
        if (!events) return events.error();
        if (!events->empty()) t.any = true;
        for (auto& e : *events) {
            if (!timeline_wants(filter, e)) {
                cursor = e.stream_ordering - 1;
                continue;
            }
            if (static_cast<int>(t.events.size()) == limit) {
                t.limited = true;  // `cursor` still includes e: prev_batch must reach it
                break;
            }
            cursor = e.stream_ordering - 1;
            t.events.push_back(std::move(e));
        }
        if (t.limited) break;
        if (static_cast<int>(events->size()) < limit + 1) {
            exhausted = true;
            break;
        }
    }
    if (!t.limited && !exhausted && cursor > after) t.limited = true;
    std::reverse(t.events.begin(), t.events.end());
    t.prev_batch = t.events.empty() ? cursor : t.events.front().stream_ordering - 1;
    return t;
}

// The stripped state an invited user sees.
Result<array> invite_state(storage::ReadTxn& txn, const storage::MembershipRecord& m) {
    array out;
    const auto strip = [&out](const storage::EventRecord& e) -> Result<void> {
        auto pdu = stored_pdu(e);
        if (!pdu) return pdu.error();
        object s;
        s["type"] = e.type;
        s["state_key"] = e.state_key.value_or("");
        s["sender"] = e.sender;
        const auto* content = pdu->if_contains("content");
        s["content"] = content != nullptr && content->is_object() ? *content : object{};
        out.emplace_back(std::move(s));
        return {};
    };
    for (std::string_view type : kStrippedStateTypes) {
        auto e = txn.state_event(m.room_id, type, "");
        if (!e) return e.error();
        if (!*e) continue;
        if (auto r = strip(**e); !r) return r.error();
    }
    auto invite = txn.find_event(m.event_id);
    if (!invite) return invite.error();
    if (*invite) {
        if (auto r = strip(**invite); !r) return r.error();
    }
    return out;
}

// The account-data entry in sync's format; m.push_rules becomes the merged ruleset.
object account_data_event(const storage::AccountDataRecord& r, std::string_view user_id) {
    object e;
    e["type"] = r.type;
    auto content = json_object_or_empty(r.content);
    if (r.room_id.empty() && r.type == "m.push_rules") {
        object wrapped;
        wrapped["global"] = PushRules(std::move(content)).ruleset(user_id);
        content = std::move(wrapped);
    }
    e["content"] = std::move(content);
    return e;
}

// What one read job found.
struct Batch {
    object body;
    bool has_updates = false;
    bool acknowledged_to_device = false;  // stored messages at or before since.to_device
    SyncFilter filter;                    // the filter applied (a stored one resolved)
};

class Collector {
public:
    Collector(storage::ReadTxn& txn, const Actor& actor, const SyncRequest& request,
              const SyncFilter& filter, const TypingService& typing)
        : txn_(txn), actor_(actor), request_(request), filter_(filter), typing_(typing) {}

    Result<Batch> run() {
        if (auto r = read_positions(); !r) return r.error();
        if (auto r = read_account_data(); !r) return r.error();
        if (auto r = read_rooms(); !r) return r.error();
        if (auto r = read_to_device(); !r) return r.error();
        if (auto r = read_device_lists(); !r) return r.error();
        if (auto r = read_keys(); !r) return r.error();

        batch_.filter = filter_;
        object rooms;
        rooms["join"] = std::move(join_);
        rooms["invite"] = std::move(invite_);
        rooms["leave"] = std::move(leave_);
        object& body = batch_.body;
        body["next_batch"] = format_sync_token(next_);
        body["rooms"] = std::move(rooms);
        body["account_data"] = object{{"events", std::move(global_account_data_)}};
        body["presence"] = object{{"events", array{}}};
        return std::move(batch_);
    }

private:
    bool initial() const { return !request_.since.has_value(); }
    std::int64_t since_events() const { return request_.since ? request_.since->events : 0; }

    Result<void> read_positions() {
        auto events = txn_.max_stream_ordering();
        if (!events) return events.error();
        auto account_data = txn_.stream_position(actor_.user_id, "account_data");
        if (!account_data) return account_data.error();
        auto to_device = txn_.stream_position(actor_.user_id, "to_device");
        if (!to_device) return to_device.error();
        auto device_lists = txn_.stream_position("", "device_lists");
        if (!device_lists) return device_lists.error();
        auto receipts = txn_.stream_position("", "receipts");
        if (!receipts) return receipts.error();
        // The typing serial is set by read_rooms(), with the typing snapshot.
        next_ = SyncToken{*events, *account_data, *to_device, *device_lists, *receipts, 0};
        if (request_.since) {
            // Never hand out a token behind the one presented.
            next_.events = std::max(next_.events, request_.since->events);
            next_.account_data = std::max(next_.account_data, request_.since->account_data);
            next_.to_device = std::max(next_.to_device, request_.since->to_device);
            next_.device_lists = std::max(next_.device_lists, request_.since->device_lists);
            next_.receipts = std::max(next_.receipts, request_.since->receipts);
        }
        return {};
    }

    Result<void> read_account_data() {
        const std::int64_t after = request_.since ? request_.since->account_data : 0;
        auto entries = txn_.account_data_since(actor_.user_id, after, kMaxAccountDataPerSync);
        if (!entries) return entries.error();
        bool push_rules = false;
        for (const auto& r : *entries) {
            if (r.room_id.empty()) {
                if (r.type == "m.push_rules") push_rules = true;
                global_account_data_.emplace_back(account_data_event(r, actor_.user_id));
            } else {
                room_account_data_[r.room_id].emplace_back(account_data_event(r, actor_.user_id));
            }
            batch_.has_updates = true;
        }
        if (static_cast<int>(entries->size()) == kMaxAccountDataPerSync) {
            next_.account_data = entries->back().stream_pos;
        }
        if (initial() && !push_rules) {
            // The server-default rules, which clients expect on an initial sync.
            storage::AccountDataRecord defaults{actor_.user_id, "", "m.push_rules", "{}", 0};
            global_account_data_.emplace_back(account_data_event(defaults, actor_.user_id));
        }
        return {};
    }

    Result<void> read_rooms() {
        auto memberships = txn_.user_memberships(actor_.user_id);
        if (!memberships) return memberships.error();
        std::vector<std::string> joined;
        for (const auto& m : *memberships) {
            if (!m.forgotten && m.membership == "join" && room_wanted(filter_, m.room_id)) {
                joined.push_back(m.room_id);
            }
        }
        read_typing(joined);
        const std::int64_t gap = next_.events - since_events();
        if (!initial() && !request_.full_state && gap <= kMaxGapForRoomFilter) {
            auto rooms = txn_.rooms_with_events(since_events(), next_.events,
                                                static_cast<int>(kMaxGapForRoomFilter));
            if (!rooms) return rooms.error();
            rooms_with_events_.emplace(rooms->begin(), rooms->end());
        }
        for (const auto& m : *memberships) {
            if (m.forgotten || !room_wanted(filter_, m.room_id)) continue;
            Result<void> r;
            if (m.membership == "join") {
                joined_rooms_.push_back(m.room_id);
                r = joined_room(m);
            } else if (m.membership == "invite") {
                r = invited_room(m);
            } else if (m.membership == "leave" || m.membership == "ban") {
                r = left_room(m);
            }
            if (!r) return r.error();
        }
        return {};
    }

    // The typing snapshot of the joined rooms, and the token's typing serial. A `since` whose
    // serial is not of this process (from before a restart, or from another instance) gets
    // every joined room's typing set, and this process's serial from then on.
    void read_typing(const std::vector<std::string>& joined) {
        typing_snapshot_ = typing_.snapshot(joined);
        next_.typing = typing_snapshot_.serial;
        typing_reset_ = request_.since && (request_.since->typing < typing_.first_serial() ||
                                           request_.since->typing > typing_snapshot_.serial);
    }

    // The room's ephemeral events: m.typing and m.receipt, as described in the header.
    // Whether an incremental sync may owe the room an m.typing or m.receipt event: its typing
    // set changed after `since` (or `since` is not this process's), or any receipt anywhere
    // moved after `since` (receipts are not indexed by position alone, so any move counts).
    bool ephemeral_may_have_changed(const std::string& room_id) const {
        if (typing_reset_ || next_.receipts > request_.since->receipts) return true;
        auto it = typing_snapshot_.rooms.find(room_id);
        return it != typing_snapshot_.rooms.end() && it->second.serial > request_.since->typing;
    }

    Result<array> ephemeral_events(const std::string& room_id, bool whole_room) {
        array out;
        std::vector<std::string> typing_users;
        std::int64_t typing_serial = 0;
        if (auto it = typing_snapshot_.rooms.find(room_id); it != typing_snapshot_.rooms.end()) {
            typing_users = it->second.user_ids;
            typing_serial = it->second.serial;
        }
        bool send_typing = false;
        if (initial() || whole_room) {
            send_typing = !typing_users.empty();
        } else {
            send_typing = typing_reset_ || typing_serial > request_.since->typing;
        }
        if (send_typing) {
            array ids;
            for (auto& u : typing_users) ids.emplace_back(std::move(u));
            out.emplace_back(
                object{{"type", "m.typing"}, {"content", object{{"user_ids", std::move(ids)}}}});
        }

        const std::int64_t after = initial() || whole_room ? 0 : request_.since->receipts;
        auto receipts = txn_.room_receipts_since(room_id, after, actor_.user_id);
        if (!receipts) return receipts.error();
        if (!receipts->empty()) {
            object content;  // event ID -> receipt type -> user ID -> {ts, thread_id?}
            for (const auto& r : *receipts) {
                if (r.stream_pos > next_.receipts) continue;  // not covered by next_batch
                object receipt{{"ts", r.ts}};
                if (!r.thread_id.empty()) receipt["thread_id"] = r.thread_id;
                auto& by_type = content[r.event_id];
                if (!by_type.is_object()) by_type = object{};
                auto& by_user = by_type.as_object()[r.receipt_type];
                if (!by_user.is_object()) by_user = object{};
                by_user.as_object()[r.user_id] = std::move(receipt);
            }
            if (!content.empty()) {
                out.emplace_back(object{{"type", "m.receipt"}, {"content", std::move(content)}});
            }
        }
        return out;
    }

    Result<void> joined_room(const storage::MembershipRecord& m) {
        const bool joined_since = !initial() && m.stream_ordering > since_events();
        const bool whole = initial() || joined_since || request_.full_state;
        const std::int64_t after = initial() || joined_since ? 0 : since_events();
        auto found = room_account_data_.find(m.room_id);
        const bool has_account_data = found != room_account_data_.end();
        if (!whole && !has_account_data && rooms_with_events_ &&
            !rooms_with_events_->contains(m.room_id) && !ephemeral_may_have_changed(m.room_id)) {
            return {};  // nothing after `since`: pick_timeline would find no event
        }
        auto timeline = pick_timeline(txn_, m.room_id, after, next_.events, filter_);
        if (!timeline) return timeline.error();
        auto ephemeral = ephemeral_events(m.room_id, initial() || joined_since);
        if (!ephemeral) return ephemeral.error();
        if (!whole && !timeline->any && !has_account_data && ephemeral->empty()) return {};

        std::set<std::string_view> in_timeline;
        for (const auto& e : timeline->events) in_timeline.insert(e.event_id);
        std::vector<storage::EventRecord> state;
        if (whole || timeline->limited) {
            auto current = txn_.state_events(m.room_id);
            if (!current) return current.error();
            const std::int64_t gap_start = whole ? 0 : since_events();
            for (auto& e : *current) {
                if (in_timeline.contains(e.event_id) || e.stream_ordering <= gap_start) continue;
                state.push_back(std::move(e));
            }
        }
        auto state_json = sync_events(txn_, state);
        if (!state_json) return state_json.error();
        auto timeline_json = sync_events(txn_, timeline->events);
        if (!timeline_json) return timeline_json.error();
        if (joined_since) {
            if (auto r = note_members(m.room_id, newly_sharing_); !r) return r.error();
        } else if (!initial()) {
            // The member events after `since`, gap state first, in stream order.
            note_member_events(state);
            note_member_events(timeline->events);
        }

        object room;
        room["state"] = object{{"events", std::move(*state_json)}};
        object t;
        t["events"] = std::move(*timeline_json);
        t["limited"] = timeline->limited;
        t["prev_batch"] = stream_token(timeline->prev_batch);
        room["timeline"] = std::move(t);
        array account_data;
        if (has_account_data) account_data = std::move(found->second);
        room["account_data"] = object{{"events", std::move(account_data)}};
        room["ephemeral"] = object{{"events", std::move(*ephemeral)}};
        join_[m.room_id] = std::move(room);
        batch_.has_updates = true;
        return {};
    }

    Result<void> invited_room(const storage::MembershipRecord& m) {
        if (!initial() && m.stream_ordering <= since_events()) return {};
        auto stripped = invite_state(txn_, m);
        if (!stripped) return stripped.error();
        invite_[m.room_id] = object{{"invite_state", object{{"events", std::move(*stripped)}}}};
        batch_.has_updates = true;
        return {};
    }

    Result<void> left_room(const storage::MembershipRecord& m) {
        if (initial() || m.stream_ordering <= since_events()) return {};
        if (auto r = note_members(m.room_id, maybe_left_); !r) return r.error();
        auto timeline = pick_timeline(txn_, m.room_id, since_events(), m.stream_ordering, filter_);
        if (!timeline) return timeline.error();
        auto timeline_json = sync_events(txn_, timeline->events);
        if (!timeline_json) return timeline_json.error();
        object room;
        room["state"] = object{{"events", array{}}};
        object t;
        t["events"] = std::move(*timeline_json);
        t["limited"] = timeline->limited;
        t["prev_batch"] = stream_token(timeline->prev_batch);
        room["timeline"] = std::move(t);
        room["account_data"] = object{{"events", array{}}};
        leave_[m.room_id] = std::move(room);
        batch_.has_updates = true;
        return {};
    }

    Result<void> read_to_device() {
        const std::int64_t after = request_.since ? request_.since->to_device : 0;
        if (after > 0) {
            auto oldest = txn_.to_device_since(actor_.user_id, actor_.device_id, 0, 1);
            if (!oldest) return oldest.error();
            batch_.acknowledged_to_device = !oldest->empty() && oldest->front().stream_pos <= after;
        }
        auto messages =
            txn_.to_device_since(actor_.user_id, actor_.device_id, after, kMaxToDevicePerSync);
        if (!messages) return messages.error();
        array events;
        for (const auto& msg : *messages) {
            object e;
            e["type"] = msg.type;
            e["sender"] = msg.sender;
            e["content"] = json_object_or_empty(msg.content);
            events.emplace_back(std::move(e));
        }
        if (!messages->empty()) batch_.has_updates = true;
        if (static_cast<int>(messages->size()) == kMaxToDevicePerSync) {
            next_.to_device = messages->back().stream_pos;
        }
        batch_.body["to_device"] = object{{"events", std::move(events)}};
        return {};
    }

    // device_lists: `changed` holds the users sharing a room with the user whose devices or
    // cross-signing keys changed after `since`, and the users who newly share a room with them
    // (they joined one of the user's rooms, or the user joined theirs); `left` the users who
    // left, or whose rooms the user left, and who now share no room with the user. Rooms of
    // every kind count (encrypted or not): a superset of the spec's encrypted rooms, which
    // costs a client at most a needless key query.
    Result<void> read_device_lists() {
        array changed;
        array left;
        std::set<std::string> listed;  // users in `changed`
        if (request_.since && next_.device_lists > request_.since->device_lists) {
            auto changes = txn_.device_list_changes_since(request_.since->device_lists,
                                                          kMaxDeviceListChangesPerSync);
            if (!changes) return changes.error();
            if (static_cast<int>(changes->size()) == kMaxDeviceListChangesPerSync) {
                next_.device_lists = changes->back().stream_pos;
            }
            auto sharing = sharing_users();
            if (!sharing) return sharing.error();
            for (const auto& c : *changes) {
                if ((*sharing)->contains(c.user_id) && listed.insert(c.user_id).second) {
                    changed.emplace_back(c.user_id);
                }
            }
        }
        for (const auto& user : newly_sharing_) {
            if (user != actor_.user_id && listed.insert(user).second) changed.emplace_back(user);
        }
        if (!maybe_left_.empty()) {
            auto sharing = sharing_users();
            if (!sharing) return sharing.error();
            for (const auto& user : maybe_left_) {
                if (!(*sharing)->contains(user)) left.emplace_back(user);
            }
        }
        if (!changed.empty() || !left.empty()) batch_.has_updates = true;
        batch_.body["device_lists"] =
            object{{"changed", std::move(changed)}, {"left", std::move(left)}};
        return {};
    }

    // The user and every joined member of the rooms they are joined to, read once.
    Result<const std::set<std::string>*> sharing_users() {
        if (!sharing_) {
            std::set<std::string> sharing{actor_.user_id};
            for (const auto& room_id : joined_rooms_) {
                auto members = txn_.room_members(room_id);
                if (!members) return members.error();
                for (auto& member : *members) {
                    if (member.membership == "join") sharing.insert(std::move(member.user_id));
                }
            }
            sharing_.emplace(std::move(sharing));
        }
        return &*sharing_;
    }

    // Adds the room's joined members (the user excepted) to `into`.
    Result<void> note_members(const std::string& room_id, std::set<std::string>& into) {
        auto members = txn_.room_members(room_id);
        if (!members) return members.error();
        for (auto& member : *members) {
            if (member.membership == "join" && member.user_id != actor_.user_id) {
                into.insert(std::move(member.user_id));
            }
        }
        return {};
    }

    // Follows the member events (in stream order) of a room the user stays in: a join makes
    // its user newly sharing, a leave, kick or ban one who may have left.
    void note_member_events(const std::vector<storage::EventRecord>& events) {
        for (const auto& e : events) {
            if (e.type != "m.room.member" || !e.state_key || *e.state_key == actor_.user_id) {
                continue;
            }
            const std::string membership = membership_of(e);
            if (membership == "join") {
                maybe_left_.erase(*e.state_key);
                newly_sharing_.insert(*e.state_key);
            } else if (membership == "leave" || membership == "ban") {
                newly_sharing_.erase(*e.state_key);
                maybe_left_.insert(*e.state_key);
            }
        }
    }

    Result<void> read_keys() {
        auto counts = txn_.count_one_time_keys(actor_.user_id, actor_.device_id);
        if (!counts) return counts.error();
        object count_json;
        for (const auto& [algorithm, n] : *counts) count_json[algorithm] = n;
        batch_.body["device_one_time_keys_count"] = std::move(count_json);
        auto fallback = txn_.unused_fallback_key_algorithms(actor_.user_id, actor_.device_id);
        if (!fallback) return fallback.error();
        array types;
        for (auto& a : *fallback) types.emplace_back(std::move(a));
        batch_.body["device_unused_fallback_key_types"] = std::move(types);
        return {};
    }

    storage::ReadTxn& txn_;
    const Actor& actor_;
    const SyncRequest& request_;
    const SyncFilter& filter_;
    const TypingService& typing_;
    TypingSet::Snapshot typing_snapshot_;
    bool typing_reset_ = false;
    Batch batch_;
    SyncToken next_;
    std::vector<std::string> joined_rooms_;
    // device_lists (see read_device_lists): users who newly share a room with the user, users
    // who may share none any more, and the members of the user's rooms (read when needed).
    std::set<std::string> newly_sharing_;
    std::set<std::string> maybe_left_;
    std::optional<std::set<std::string>> sharing_;
    // Incremental syncs with a short gap: the rooms with events after `since` (see read_rooms).
    std::optional<std::set<std::string, std::less<>>> rooms_with_events_;
    array global_account_data_;
    std::map<std::string, array, std::less<>> room_account_data_;
    object join_;
    object invite_;
    object leave_;
};

// The read job of one sync pass: resolves a stored filter, then collects.
Result<Batch> collect(storage::ReadTxn& txn, const Actor& actor, const SyncRequest& request,
                      const TypingService& typing) {
    SyncFilter filter = request.filter;
    if (request.filter_id) {
        auto stored = txn.find_filter(actor.user_id, *request.filter_id);
        if (!stored) return stored.error();
        if (!*stored) return errors::invalid_param("No such filter");
        filter = parse_sync_filter(json_object_or_empty(**stored));
    }
    return Collector(txn, actor, request, filter, typing).run();
}

// One sync pass: a read job (collect) on a storage reader, then, when its answer is final, the
// deletion of the to-device messages `since` acknowledges. nullopt when the pass found nothing
// and `may_wait`: `request` then holds the resolved filter for the pass after the wait (the empty
// answer, ~1 KiB of JSON, is freed here rather than kept through a wait of minutes). A coroutine
// of its own so that its locals are not in the frame of a waiting sync().
boost::asio::awaitable<Result<std::optional<object>>> run_pass(storage::Database& db,
                                                               const Actor& actor,
                                                               SyncRequest& request,
                                                               const TypingService& typing,
                                                               bool may_wait) {
    auto job = [actor, request, &typing](storage::ReadTxn& txn) {
        return collect(txn, actor, request, typing);
    };
    auto reading = storage::read<Batch>(db, std::move(job));
    Result<Batch> batch = co_await std::move(reading);
    if (!batch) co_return batch.error();
    if (may_wait && !batch->has_updates) {
        request.filter = std::move(batch->filter);
        request.filter_id.reset();
        co_return std::optional<object>();
    }
    if (batch->acknowledged_to_device) {
        // Delivered: the client's `since` covers them. A failure only delays the deletion.
        auto delete_job = [actor, through = request.since->to_device](storage::WriteTxn& txn) {
            return txn.delete_to_device_through(actor.user_id, actor.device_id, through);
        };
        auto deleting = storage::write<std::int64_t>(db, std::move(delete_job));
        auto deleted = co_await std::move(deleting);
        (void)deleted;
    }
    co_return std::optional<object>(std::move(batch->body));
}

}  // namespace

SyncFilter parse_sync_filter(const object& filter) {
    SyncFilter f;
    const object* room = object_at(filter, "room");
    if (room == nullptr) return f;
    f.rooms = strings_at(*room, "rooms");
    f.not_rooms = strings_at(*room, "not_rooms").value_or(std::vector<std::string>{});
    const object* timeline = object_at(*room, "timeline");
    if (timeline == nullptr) return f;
    if (const auto* limit = timeline->if_contains("limit"); limit != nullptr && limit->is_int64()) {
        f.timeline_limit =
            static_cast<int>(std::clamp<std::int64_t>(limit->as_int64(), 0, kMaxTimelineLimit));
    }
    f.timeline_types = strings_at(*timeline, "types");
    f.timeline_not_types = strings_at(*timeline, "not_types").value_or(std::vector<std::string>{});
    f.timeline_senders = strings_at(*timeline, "senders");
    f.timeline_not_senders =
        strings_at(*timeline, "not_senders").value_or(std::vector<std::string>{});
    return f;
}

boost::asio::awaitable<Result<object>> SyncService::sync(Actor actor, SyncRequest request) {
    // Read the wake counter before storage: a commit after the read raises it (no lost wake-up).
    const std::uint64_t counter = notifier_.counter(actor.user_id);
    // This frame is what a long-poll keeps while it waits (bench/sync_bench.py idle_polls):
    // each read pass runs in a coroutine of its own (its job's copies of the actor and the
    // request, the batch) that is gone before the wait.
    const bool may_wait = request.since && request.timeout.count() > 0;
    auto first_pass = run_pass(db_, actor, request, typing_, may_wait);
    Result<std::optional<object>> pass = co_await std::move(first_pass);
    if (!pass) co_return pass.error();
    if (!*pass) {
        auto waiting = notifier_.wait(actor.user_id, counter, request.timeout);
        co_await std::move(waiting);
        auto second_pass = run_pass(db_, actor, request, typing_, false);
        pass = co_await std::move(second_pass);
        if (!pass) co_return pass.error();
    }
    co_return std::move(**pass);
}

}  // namespace myelin::service
