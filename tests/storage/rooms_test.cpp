// The room and event methods of ReadTxn / WriteTxn on every backend (database.hpp, "Rooms and
// events"): rooms, appending events with their state, membership and forward-extremity changes
// in one job, stream orderings in commit order and range reads in both directions, memberships
// of a user and changes since a position, redaction, client transactions, forgetting, aliases
// and the public directory.

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"

#include "test_database.hpp"

namespace myelin::storage {
namespace {

RoomRecord make_room(const std::string& id) {
    RoomRecord r;
    r.room_id = id;
    r.room_version = "10";
    r.creator = "@alice:x";
    r.created_ts = 1000;
    return r;
}

NewEvent make_event(const std::string& id, const std::string& room, std::int64_t depth,
                    const std::string& type, std::optional<std::string> state_key,
                    std::vector<std::string> prev) {
    NewEvent e;
    e.event_id = id;
    e.room_id = room;
    e.depth = depth;
    e.type = type;
    e.state_key = std::move(state_key);
    e.sender = "@alice:x";
    e.origin_server_ts = 2000 + depth;
    e.json = "{\"event\":\"" + id + "\"}";
    e.prev_events = std::move(prev);
    return e;
}

NewEvent member_event(const std::string& id, const std::string& room, std::int64_t depth,
                      const std::string& user, const std::string& membership,
                      std::vector<std::string> prev) {
    NewEvent e = make_event(id, room, depth, "m.room.member", user, std::move(prev));
    e.membership = membership;
    return e;
}

class RoomsTest : public testing::BackendTest {
protected:
    template <typename T, typename Fn>
    T write(Fn fn) {
        Result<T> r = write_sync<T>(*db_, std::move(fn));
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        if constexpr (!std::is_void_v<T>) return r ? std::move(*r) : T{};
    }
    template <typename T, typename Fn>
    T read(Fn fn) {
        Result<T> r = read_sync<T>(*db_, std::move(fn));
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        return r ? std::move(*r) : T{};
    }
    std::int64_t append(const NewEvent& e) {
        return write<std::int64_t>([&](WriteTxn& txn) { return txn.append_event(e); });
    }
    std::vector<std::string> ids(const std::vector<EventRecord>& events) {
        std::vector<std::string> out;
        for (const auto& e : events) out.push_back(e.event_id);
        return out;
    }
    // A room "!r:x" with create (1), alice's join (2) and a message (3).
    void make_basic_room() {
        ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!r:x")); }));
        append(make_event("$create", "!r:x", 1, "m.room.create", "", {}));
        append(member_event("$join", "!r:x", 2, "@alice:x", "join", {"$create"}));
        append(make_event("$msg", "!r:x", 3, "m.room.message", std::nullopt, {"$join"}));
    }
};

TEST_P(RoomsTest, RoomRoundTripAndDuplicateIsRefused) {
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!a:x")); }));
    auto again = make_room("!a:x");
    again.creator = "@mallory:x";
    EXPECT_FALSE(write<bool>([&](WriteTxn& txn) { return txn.insert_room(again); }));
    auto room = read<std::optional<RoomRecord>>([](ReadTxn& txn) { return txn.find_room("!a:x"); });
    ASSERT_TRUE(room);
    EXPECT_EQ(room->room_version, "10");
    EXPECT_EQ(room->creator, "@alice:x");
    EXPECT_EQ(room->created_ts, 1000);
    EXPECT_FALSE(room->is_public);
    EXPECT_FALSE(
        read<std::optional<RoomRecord>>([](ReadTxn& txn) { return txn.find_room("!b:x"); }));
}

TEST_P(RoomsTest, AppendedEventsGetIncreasingPositionsAndUpdateStateAndExtremities) {
    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!r:x")); }));
    EXPECT_EQ(read<std::int64_t>([](ReadTxn& txn) { return txn.max_stream_ordering(); }), 0);
    const auto p1 = append(make_event("$create", "!r:x", 1, "m.room.create", "", {}));
    const auto p2 = append(member_event("$join", "!r:x", 2, "@alice:x", "join", {"$create"}));
    const auto p3 =
        append(make_event("$msg", "!r:x", 3, "m.room.message", std::nullopt, {"$join"}));
    EXPECT_LT(0, p1);
    EXPECT_LT(p1, p2);
    EXPECT_LT(p2, p3);
    EXPECT_EQ(read<std::int64_t>([](ReadTxn& txn) { return txn.max_stream_ordering(); }), p3);

    auto msg =
        read<std::optional<EventRecord>>([](ReadTxn& txn) { return txn.find_event("$msg"); });
    ASSERT_TRUE(msg);
    EXPECT_EQ(msg->stream_ordering, p3);
    EXPECT_EQ(msg->room_id, "!r:x");
    EXPECT_EQ(msg->depth, 3);
    EXPECT_EQ(msg->type, "m.room.message");
    EXPECT_FALSE(msg->state_key);
    EXPECT_EQ(msg->sender, "@alice:x");
    EXPECT_EQ(msg->origin_server_ts, 2003);
    EXPECT_EQ(msg->json, "{\"event\":\"$msg\"}");
    EXPECT_EQ(msg->redacted_by, "");

    auto state = read<std::vector<StateEntry>>([](ReadTxn& txn) { return txn.room_state("!r:x"); });
    ASSERT_EQ(state.size(), 2u);
    EXPECT_EQ(state[0].type, "m.room.create");
    EXPECT_EQ(state[0].event_id, "$create");
    EXPECT_EQ(state[1].type, "m.room.member");
    EXPECT_EQ(state[1].state_key, "@alice:x");
    auto member = read<std::optional<EventRecord>>(
        [](ReadTxn& txn) { return txn.state_event("!r:x", "m.room.member", "@alice:x"); });
    ASSERT_TRUE(member);
    EXPECT_EQ(member->event_id, "$join");
    ASSERT_TRUE(member->state_key);
    EXPECT_EQ(*member->state_key, "@alice:x");
    EXPECT_FALSE(read<std::optional<EventRecord>>(
        [](ReadTxn& txn) { return txn.state_event("!r:x", "m.room.member", "@bob:x"); }));
    EXPECT_EQ(
        ids(read<std::vector<EventRecord>>([](ReadTxn& txn) { return txn.state_events("!r:x"); })),
        (std::vector<std::string>{"$create", "$join"}));

    auto extremities = read<std::vector<ExtremityRecord>>(
        [](ReadTxn& txn) { return txn.forward_extremities("!r:x"); });
    ASSERT_EQ(extremities.size(), 1u);
    EXPECT_EQ(extremities[0].event_id, "$msg");
    EXPECT_EQ(extremities[0].depth, 3);
}

TEST_P(RoomsTest, NewStateReplacesOldAndADuplicateEventIdFailsTheWholeJob) {
    make_basic_room();
    auto topic1 = make_event("$t1", "!r:x", 4, "m.room.topic", "", {"$msg"});
    append(topic1);
    auto topic2 = make_event("$t2", "!r:x", 5, "m.room.topic", "", {"$t1"});
    append(topic2);
    auto topic = read<std::optional<EventRecord>>(
        [](ReadTxn& txn) { return txn.state_event("!r:x", "m.room.topic", ""); });
    ASSERT_TRUE(topic);
    EXPECT_EQ(topic->event_id, "$t2");

    // The same event ID again: an error, and nothing of the job stays (no state change).
    auto dup = make_event("$t2", "!r:x", 6, "m.room.name", "", {"$t2"});
    Result<std::int64_t> r =
        write_sync<std::int64_t>(*db_, [&](WriteTxn& txn) { return txn.append_event(dup); });
    EXPECT_FALSE(r);
    EXPECT_FALSE(read<std::optional<EventRecord>>(
        [](ReadTxn& txn) { return txn.state_event("!r:x", "m.room.name", ""); }));
    auto extremities = read<std::vector<ExtremityRecord>>(
        [](ReadTxn& txn) { return txn.forward_extremities("!r:x"); });
    ASSERT_EQ(extremities.size(), 1u);
    EXPECT_EQ(extremities[0].event_id, "$t2");
}

TEST_P(RoomsTest, RoomEventsReadsRangesInBothDirections) {
    make_basic_room();
    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!other:x")); }));
    append(make_event("$o1", "!other:x", 1, "m.room.create", "", {}));
    append(make_event("$m4", "!r:x", 4, "m.room.message", std::nullopt, {"$msg"}));
    const auto max = read<std::int64_t>([](ReadTxn& txn) { return txn.max_stream_ordering(); });

    auto all_fwd = read<std::vector<EventRecord>>([&](ReadTxn& txn) {
        return txn.room_events("!r:x", EventRange{0, max, false, 100});
    });
    EXPECT_EQ(ids(all_fwd), (std::vector<std::string>{"$create", "$join", "$msg", "$m4"}));
    auto all_back = read<std::vector<EventRecord>>([&](ReadTxn& txn) {
        return txn.room_events("!r:x", EventRange{0, max, true, 100});
    });
    EXPECT_EQ(ids(all_back), (std::vector<std::string>{"$m4", "$msg", "$join", "$create"}));
    // Limits, and after/upto bounds (exclusive, inclusive).
    auto newest_two = read<std::vector<EventRecord>>([&](ReadTxn& txn) {
        return txn.room_events("!r:x", EventRange{0, max, true, 2});
    });
    EXPECT_EQ(ids(newest_two), (std::vector<std::string>{"$m4", "$msg"}));
    const auto join_pos = all_fwd[1].stream_ordering;
    const auto msg_pos = all_fwd[2].stream_ordering;
    auto between = read<std::vector<EventRecord>>([&](ReadTxn& txn) {
        return txn.room_events("!r:x", EventRange{join_pos, msg_pos, false, 100});
    });
    EXPECT_EQ(ids(between), (std::vector<std::string>{"$msg"}));
    auto none = read<std::vector<EventRecord>>([&](ReadTxn& txn) {
        return txn.room_events("!r:x", EventRange{0, max, false, 0});
    });
    EXPECT_TRUE(none.empty());
}

TEST_P(RoomsTest, RoomsWithEventsListsEachRoomOfARangeOnce) {
    make_basic_room();  // positions 1..3 in !r:x
    const auto before_other =
        read<std::int64_t>([](ReadTxn& txn) { return txn.max_stream_ordering(); });
    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!b:x")); }));
    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!a:x")); }));
    const auto b1 = append(make_event("$b1", "!b:x", 1, "m.room.create", "", {}));
    append(make_event("$a1", "!a:x", 1, "m.room.create", "", {}));
    append(make_event("$b2", "!b:x", 2, "m.room.message", std::nullopt, {"$b1"}));
    const auto max = read<std::int64_t>([](ReadTxn& txn) { return txn.max_stream_ordering(); });
    const auto rooms = [&](std::int64_t after, std::int64_t upto, int limit) {
        return read<std::vector<std::string>>(
            [=](ReadTxn& txn) { return txn.rooms_with_events(after, upto, limit); });
    };
    using Ids = std::vector<std::string>;
    EXPECT_EQ(rooms(0, max, 10), (Ids{"!a:x", "!b:x", "!r:x"}));     // each once, by room_id
    EXPECT_EQ(rooms(before_other, max, 10), (Ids{"!a:x", "!b:x"}));  // after is exclusive
    EXPECT_EQ(rooms(before_other, b1, 10), (Ids{"!b:x"}));           // upto is inclusive
    EXPECT_EQ(rooms(max, max, 10), Ids{});
    EXPECT_EQ(rooms(0, max, 2), (Ids{"!a:x", "!b:x"}));
    EXPECT_EQ(rooms(0, max, 0), Ids{});
}

TEST_P(RoomsTest, MembershipsFollowMemberEventsAndChangesSinceAPosition) {
    make_basic_room();
    const auto before_bob =
        read<std::int64_t>([](ReadTxn& txn) { return txn.max_stream_ordering(); });
    append(member_event("$inv", "!r:x", 4, "@bob:x", "invite", {"$msg"}));
    auto m = read<std::optional<MembershipRecord>>(
        [](ReadTxn& txn) { return txn.find_membership("!r:x", "@bob:x"); });
    ASSERT_TRUE(m);
    EXPECT_EQ(m->membership, "invite");
    EXPECT_EQ(m->event_id, "$inv");
    append(member_event("$bjoin", "!r:x", 5, "@bob:x", "join", {"$inv"}));
    m = read<std::optional<MembershipRecord>>(
        [](ReadTxn& txn) { return txn.find_membership("!r:x", "@bob:x"); });
    ASSERT_TRUE(m);
    EXPECT_EQ(m->membership, "join");
    EXPECT_EQ(m->event_id, "$bjoin");
    EXPECT_FALSE(m->forgotten);

    auto members =
        read<std::vector<MembershipRecord>>([](ReadTxn& txn) { return txn.room_members("!r:x"); });
    ASSERT_EQ(members.size(), 2u);
    EXPECT_EQ(members[0].user_id, "@alice:x");
    EXPECT_EQ(members[1].user_id, "@bob:x");

    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!s:x")); }));
    append(make_event("$screate", "!s:x", 1, "m.room.create", "", {}));
    append(member_event("$sjoin", "!s:x", 2, "@bob:x", "join", {"$screate"}));
    auto rooms = read<std::vector<MembershipRecord>>(
        [](ReadTxn& txn) { return txn.user_memberships("@bob:x"); });
    ASSERT_EQ(rooms.size(), 2u);
    EXPECT_EQ(rooms[0].room_id, "!r:x");
    EXPECT_EQ(rooms[1].room_id, "!s:x");

    auto changes = read<std::vector<MembershipRecord>>(
        [&](ReadTxn& txn) { return txn.membership_changes_since("@bob:x", before_bob, 100); });
    ASSERT_EQ(changes.size(), 2u);  // the current membership of each changed room, oldest first
    EXPECT_EQ(changes[0].event_id, "$bjoin");
    EXPECT_EQ(changes[1].event_id, "$sjoin");
    const auto after_first = changes[0].stream_ordering;
    changes = read<std::vector<MembershipRecord>>(
        [&](ReadTxn& txn) { return txn.membership_changes_since("@bob:x", after_first, 100); });
    ASSERT_EQ(changes.size(), 1u);
    EXPECT_EQ(changes[0].room_id, "!s:x");
    EXPECT_TRUE(read<std::vector<MembershipRecord>>([&](ReadTxn& txn) {
                    return txn.membership_changes_since("@bob:x", 0, 0);
                }).empty());
}

TEST_P(RoomsTest, ForgetMarksTheMembershipUntilItChanges) {
    make_basic_room();
    append(member_event("$leave", "!r:x", 4, "@alice:x", "leave", {"$msg"}));
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.forget_room("!r:x", "@alice:x"); }));
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.forget_room("!r:x", "@nobody:x"); }));
    auto m = read<std::optional<MembershipRecord>>(
        [](ReadTxn& txn) { return txn.find_membership("!r:x", "@alice:x"); });
    ASSERT_TRUE(m);
    EXPECT_TRUE(m->forgotten);
    append(member_event("$rejoin", "!r:x", 5, "@alice:x", "join", {"$leave"}));
    m = read<std::optional<MembershipRecord>>(
        [](ReadTxn& txn) { return txn.find_membership("!r:x", "@alice:x"); });
    ASSERT_TRUE(m);
    EXPECT_FALSE(m->forgotten);
}

TEST_P(RoomsTest, RedactionReplacesTheJsonAndKeepsThePosition) {
    make_basic_room();
    auto before =
        read<std::optional<EventRecord>>([](ReadTxn& txn) { return txn.find_event("$msg"); });
    ASSERT_TRUE(before);
    EXPECT_TRUE(write<bool>(
        [](WriteTxn& txn) { return txn.redact_event("$msg", "{\"redacted\":1}", "$red"); }));
    EXPECT_FALSE(
        write<bool>([](WriteTxn& txn) { return txn.redact_event("$none", "{}", "$red"); }));
    auto after =
        read<std::optional<EventRecord>>([](ReadTxn& txn) { return txn.find_event("$msg"); });
    ASSERT_TRUE(after);
    EXPECT_EQ(after->json, "{\"redacted\":1}");
    EXPECT_EQ(after->redacted_by, "$red");
    EXPECT_EQ(after->stream_ordering, before->stream_ordering);
}

TEST_P(RoomsTest, TransactionsAreScopedToUserDeviceAndRoom) {
    TransactionRecord t{"@alice:x", "DEV", "!r:x", "send/1", "$e1", 5};
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.insert_transaction(t); }));
    auto again = t;
    again.event_id = "$e2";
    EXPECT_FALSE(write<bool>([&](WriteTxn& txn) { return txn.insert_transaction(again); }));
    auto found = read<std::optional<std::string>>(
        [](ReadTxn& txn) { return txn.find_transaction("@alice:x", "DEV", "!r:x", "send/1"); });
    ASSERT_TRUE(found);
    EXPECT_EQ(*found, "$e1");
    EXPECT_FALSE(read<std::optional<std::string>>(
        [](ReadTxn& txn) { return txn.find_transaction("@alice:x", "DEV2", "!r:x", "send/1"); }));
    EXPECT_FALSE(read<std::optional<std::string>>(
        [](ReadTxn& txn) { return txn.find_transaction("@alice:x", "DEV", "!s:x", "send/1"); }));
    EXPECT_FALSE(read<std::optional<std::string>>(
        [](ReadTxn& txn) { return txn.find_transaction("@bob:x", "DEV", "!r:x", "send/1"); }));
}

TEST_P(RoomsTest, AliasesAndThePublicDirectory) {
    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!b:x")); }));
    ASSERT_TRUE(write<bool>([](WriteTxn& txn) { return txn.insert_room(make_room("!a:x")); }));
    RoomAliasRecord a{"#room:x", "!a:x", "@alice:x", 7};
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.insert_room_alias(a); }));
    RoomAliasRecord taken{"#room:x", "!b:x", "@bob:x", 8};
    EXPECT_FALSE(write<bool>([&](WriteTxn& txn) { return txn.insert_room_alias(taken); }));
    auto found = read<std::optional<RoomAliasRecord>>(
        [](ReadTxn& txn) { return txn.find_room_alias("#room:x"); });
    ASSERT_TRUE(found);
    EXPECT_EQ(found->room_id, "!a:x");
    EXPECT_EQ(found->creator, "@alice:x");
    EXPECT_EQ(found->created_ts, 7);
    EXPECT_EQ(read<std::vector<RoomAliasRecord>>([](ReadTxn& txn) {
                  return txn.room_aliases("!a:x");
              }).size(),
              1u);
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.delete_room_alias("#room:x"); }));
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.delete_room_alias("#room:x"); }));
    EXPECT_FALSE(read<std::optional<RoomAliasRecord>>(
        [](ReadTxn& txn) { return txn.find_room_alias("#room:x"); }));

    EXPECT_TRUE(read<std::vector<RoomRecord>>([](ReadTxn& txn) {
                    return txn.public_rooms("", 10);
                }).empty());
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_room_public("!b:x", true); }));
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_room_public("!a:x", true); }));
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.set_room_public("!c:x", true); }));
    auto listed =
        read<std::vector<RoomRecord>>([](ReadTxn& txn) { return txn.public_rooms("", 10); });
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].room_id, "!a:x");
    EXPECT_TRUE(listed[0].is_public);
    auto page =
        read<std::vector<RoomRecord>>([](ReadTxn& txn) { return txn.public_rooms("!a:x", 10); });
    ASSERT_EQ(page.size(), 1u);
    EXPECT_EQ(page[0].room_id, "!b:x");
    EXPECT_EQ(
        read<std::vector<RoomRecord>>([](ReadTxn& txn) { return txn.public_rooms("", 1); }).size(),
        1u);
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_room_public("!a:x", false); }));
    EXPECT_EQ(
        read<std::vector<RoomRecord>>([](ReadTxn& txn) { return txn.public_rooms("", 10); }).size(),
        1u);
}

MYELIN_INSTANTIATE_ON_BACKENDS(RoomsTest);

}  // namespace
}  // namespace myelin::storage
