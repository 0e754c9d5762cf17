#pragma once

// The room and event methods of ReadTxn/WriteTxn (database.hpp, "Rooms and events"), written once
// for every SQL backend over an `Exec`: the backend's way to run one statement of room_sql.hpp
// with parameters. An Exec offers
//   template <typename T, typename Read> Result<std::optional<T>> one(sql, Params, Read)
//   template <typename T, typename Read> Result<std::vector<T>>   all(sql, Params, Read)
//   Result<std::int64_t> run(sql, Params)   // rows changed
// where Read turns the backend's row type into T (room_row_readers.hpp). See
// sqlite/sqlite_room_exec.hpp and postgres/pg_room_exec.hpp.
//
// Thread-safety: as the Exec's connection (one thread at a time).

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"
#include "myelin/storage/room_row_readers.hpp"
#include "myelin/storage/room_sql.hpp"

namespace myelin::storage::room_queries {

// One statement parameter.
struct Param {
    enum class Kind { kInt, kText, kBool, kNull };
    Kind kind = Kind::kNull;
    std::int64_t i = 0;
    std::string_view s;

    static Param integer(std::int64_t v) { return Param{Kind::kInt, v, {}}; }
    static Param text(std::string_view v) { return Param{Kind::kText, 0, v}; }
    static Param boolean(bool v) { return Param{Kind::kBool, v ? 1 : 0, {}}; }
    static Param null() { return Param{}; }
    static Param optional_text(const std::optional<std::string>& v) {
        return v ? text(*v) : null();
    }
};
using Params = std::initializer_list<Param>;

inline constexpr auto kReadRoom = [](const auto& r) { return rows::read_room(r); };
inline constexpr auto kReadEvent = [](const auto& r) { return rows::read_event(r); };
inline constexpr auto kReadMembership = [](const auto& r) { return rows::read_membership(r); };
inline constexpr auto kReadAlias = [](const auto& r) { return rows::read_room_alias(r); };
inline constexpr auto kReadInt = [](const auto& r) { return r.column_int(0); };
inline constexpr auto kReadText = [](const auto& r) { return r.column_text(0); };

template <typename Base, typename Exec>
class RoomReadMethods : public Base {
public:
    template <typename Conn>
    explicit RoomReadMethods(Conn& conn) : exec_(conn) {}

    Result<std::optional<RoomRecord>> find_room(std::string_view room_id) override {
        return exec_.template one<RoomRecord>(room_sql::kFindRoom, {Param::text(room_id)},
                                              kReadRoom);
    }
    Result<std::optional<EventRecord>> find_event(std::string_view event_id) override {
        return exec_.template one<EventRecord>(room_sql::kFindEvent, {Param::text(event_id)},
                                               kReadEvent);
    }
    Result<std::vector<StateEntry>> room_state(std::string_view room_id) override {
        return exec_.template all<StateEntry>(
            room_sql::kRoomState, {Param::text(room_id)}, [](const auto& r) {
                return StateEntry{r.column_text(0), r.column_text(1), r.column_text(2)};
            });
    }
    Result<std::optional<EventRecord>> state_event(std::string_view room_id, std::string_view type,
                                                   std::string_view state_key) override {
        return exec_.template one<EventRecord>(
            room_sql::kStateEvent,
            {Param::text(room_id), Param::text(type), Param::text(state_key)}, kReadEvent);
    }
    Result<std::vector<EventRecord>> state_events(std::string_view room_id) override {
        return exec_.template all<EventRecord>(room_sql::kStateEvents, {Param::text(room_id)},
                                               kReadEvent);
    }
    Result<std::vector<ExtremityRecord>> forward_extremities(std::string_view room_id) override {
        return exec_.template all<ExtremityRecord>(
            room_sql::kForwardExtremities, {Param::text(room_id)}, [](const auto& r) {
                return ExtremityRecord{r.column_text(0), r.column_int(1)};
            });
    }
    Result<std::vector<EventRecord>> room_events(std::string_view room_id,
                                                 const EventRange& range) override {
        if (range.limit <= 0) return std::vector<EventRecord>();
        return exec_.template all<EventRecord>(
            range.backwards ? room_sql::kRoomEventsBackwards : room_sql::kRoomEventsForwards,
            {Param::text(room_id), Param::integer(range.after), Param::integer(range.upto),
             Param::integer(range.limit)},
            kReadEvent);
    }
    Result<std::int64_t> max_stream_ordering() override {
        auto v = exec_.template one<std::int64_t>(room_sql::kMaxStreamOrdering, {}, kReadInt);
        if (!v) return v.error();
        return v->value_or(0);
    }
    Result<std::vector<std::string>> rooms_with_events(std::int64_t after, std::int64_t upto,
                                                       int limit) override {
        if (limit <= 0) return std::vector<std::string>();
        return exec_.template all<std::string>(
            room_sql::kRoomsWithEvents,
            {Param::integer(after), Param::integer(upto), Param::integer(limit)}, kReadText);
    }
    Result<std::optional<MembershipRecord>> find_membership(std::string_view room_id,
                                                            std::string_view user_id) override {
        return exec_.template one<MembershipRecord>(room_sql::kFindMembership,
                                                    {Param::text(room_id), Param::text(user_id)},
                                                    kReadMembership);
    }
    Result<std::vector<MembershipRecord>> user_memberships(std::string_view user_id) override {
        return exec_.template all<MembershipRecord>(room_sql::kUserMemberships,
                                                    {Param::text(user_id)}, kReadMembership);
    }
    Result<std::vector<MembershipRecord>> membership_changes_since(std::string_view user_id,
                                                                   std::int64_t after,
                                                                   int limit) override {
        if (limit <= 0) return std::vector<MembershipRecord>();
        return exec_.template all<MembershipRecord>(
            room_sql::kMembershipChangesSince,
            {Param::text(user_id), Param::integer(after), Param::integer(limit)}, kReadMembership);
    }
    Result<std::vector<MembershipRecord>> room_members(std::string_view room_id) override {
        return exec_.template all<MembershipRecord>(room_sql::kRoomMembers, {Param::text(room_id)},
                                                    kReadMembership);
    }
    Result<std::optional<std::string>> find_transaction(std::string_view user_id,
                                                        std::string_view device_id,
                                                        std::string_view room_id,
                                                        std::string_view txn_id) override {
        return exec_.template one<std::string>(room_sql::kFindTransaction,
                                               {Param::text(user_id), Param::text(device_id),
                                                Param::text(room_id), Param::text(txn_id)},
                                               kReadText);
    }
    Result<std::optional<RoomAliasRecord>> find_room_alias(std::string_view alias) override {
        return exec_.template one<RoomAliasRecord>(room_sql::kFindRoomAlias, {Param::text(alias)},
                                                   kReadAlias);
    }
    Result<std::vector<RoomAliasRecord>> room_aliases(std::string_view room_id) override {
        return exec_.template all<RoomAliasRecord>(room_sql::kRoomAliases, {Param::text(room_id)},
                                                   kReadAlias);
    }
    Result<std::vector<RoomRecord>> public_rooms(std::string_view after_room_id,
                                                 int limit) override {
        if (limit <= 0) return std::vector<RoomRecord>();
        return exec_.template all<RoomRecord>(
            room_sql::kPublicRooms, {Param::text(after_room_id), Param::integer(limit)}, kReadRoom);
    }
    Result<std::vector<ReceiptRecord>> room_receipts_since(std::string_view room_id,
                                                           std::int64_t after_pos,
                                                           std::string_view viewer) override {
        return exec_.template all<ReceiptRecord>(
            room_sql::kRoomReceiptsSince,
            {Param::text(room_id), Param::integer(after_pos), Param::text(viewer)},
            [](const auto& r) {
                return ReceiptRecord{r.column_text(0), r.column_text(1), r.column_text(2),
                                     r.column_text(3), r.column_text(4), r.column_int(5),
                                     r.column_int(6),  r.column_int(7)};
            });
    }

protected:
    Exec exec_;
};

// ---- The write methods, called by each backend's WriteTxn override ------------------------

template <typename Exec>
Result<bool> insert_room(Exec& exec, const RoomRecord& room) {
    auto n =
        exec.run(room_sql::kInsertRoom, {Param::text(room.room_id), Param::text(room.room_version),
                                         Param::text(room.creator), Param::integer(room.created_ts),
                                         Param::boolean(room.is_public)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<std::int64_t> append_event(Exec& exec, const NewEvent& e) {
    auto position = exec.template one<std::int64_t>(room_sql::kNextStreamOrdering, {}, kReadInt);
    if (!position) return position.error();
    if (!*position) return errors::internal("the event stream counter returned no position");
    const std::int64_t pos = **position;
    auto inserted =
        exec.run(room_sql::kInsertEvent,
                 {Param::integer(pos), Param::text(e.event_id), Param::text(e.room_id),
                  Param::integer(e.depth), Param::text(e.type), Param::optional_text(e.state_key),
                  Param::text(e.sender), Param::integer(e.origin_server_ts), Param::text(e.json)});
    if (!inserted) return inserted.error();
    if (e.state_key) {
        auto state =
            exec.run(room_sql::kSetState, {Param::text(e.room_id), Param::text(e.type),
                                           Param::text(*e.state_key), Param::text(e.event_id)});
        if (!state) return state.error();
        if (e.membership) {
            auto m = exec.run(
                room_sql::kSetMembership,
                {Param::text(e.room_id), Param::text(*e.state_key), Param::text(*e.membership),
                 Param::text(e.event_id), Param::integer(pos), Param::boolean(false)});
            if (!m) return m.error();
        }
    }
    for (const auto& prev : e.prev_events) {
        auto d = exec.run(room_sql::kDeleteExtremity, {Param::text(e.room_id), Param::text(prev)});
        if (!d) return d.error();
    }
    auto x =
        exec.run(room_sql::kInsertExtremity, {Param::text(e.room_id), Param::text(e.event_id)});
    if (!x) return x.error();
    return pos;
}

template <typename Exec>
Result<bool> redact_event(Exec& exec, std::string_view event_id, std::string_view redacted_json,
                          std::string_view redacted_by) {
    auto n = exec.run(room_sql::kRedactEvent, {Param::text(event_id), Param::text(redacted_json),
                                               Param::text(redacted_by)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<bool> insert_transaction(Exec& exec, const TransactionRecord& t) {
    auto n = exec.run(room_sql::kInsertTransaction,
                      {Param::text(t.user_id), Param::text(t.device_id), Param::text(t.room_id),
                       Param::text(t.txn_id), Param::text(t.event_id), Param::integer(t.ts)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<bool> forget_room(Exec& exec, std::string_view room_id, std::string_view user_id) {
    auto n = exec.run(room_sql::kForgetRoom,
                      {Param::text(room_id), Param::text(user_id), Param::boolean(true)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<bool> insert_room_alias(Exec& exec, const RoomAliasRecord& a) {
    auto n = exec.run(room_sql::kInsertRoomAlias,
                      {Param::text(a.alias), Param::text(a.room_id), Param::text(a.creator),
                       Param::integer(a.created_ts)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<bool> delete_room_alias(Exec& exec, std::string_view alias) {
    auto n = exec.run(room_sql::kDeleteRoomAlias, {Param::text(alias)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<bool> set_room_public(Exec& exec, std::string_view room_id, bool is_public) {
    auto n = exec.run(room_sql::kSetRoomPublic, {Param::text(room_id), Param::boolean(is_public)});
    if (!n) return n.error();
    return *n == 1;
}

template <typename Exec>
Result<std::optional<std::int64_t>> put_receipt(Exec& exec, const ReceiptRecord& r) {
    auto stored =
        exec.template one<std::int64_t>(room_sql::kReceiptPosition,
                                        {Param::text(r.room_id), Param::text(r.user_id),
                                         Param::text(r.receipt_type), Param::text(r.thread_id)},
                                        kReadInt);
    if (!stored) return stored.error();
    if (*stored && **stored >= r.event_stream_ordering) return std::optional<std::int64_t>();
    auto position = exec.template one<std::int64_t>(room_sql::kNextReceiptPosition, {}, kReadInt);
    if (!position) return position.error();
    if (!*position) return errors::internal("the receipts stream counter returned no position");
    auto n = exec.run(
        room_sql::kPutReceipt,
        {Param::text(r.room_id), Param::text(r.user_id), Param::text(r.receipt_type),
         Param::text(r.thread_id), Param::text(r.event_id), Param::integer(r.event_stream_ordering),
         Param::integer(r.ts), Param::integer(**position)});
    if (!n) return n.error();
    return std::optional<std::int64_t>(**position);
}

}  // namespace myelin::storage::room_queries
