// RoomService and EventBuilder against a real SQLite database: the events of a room are built as
// a federating server builds them (every stored event's content hash, signature by the server's
// key and reference-hash event ID verify with the events library; prev_events form one chain with
// increasing depth; auth_events are the selection from the state), concurrent sends stay one
// chain, the authorization rules are enforced, transaction IDs are idempotent per device,
// redactions keep the signature and ID valid, and oversized events are refused.

#include "myelin/service/room_service.hpp"

#include <set>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "myelin/auth/sodium_init.hpp"
#include "myelin/events/event_hashing.hpp"
#include "myelin/events/event_signing.hpp"
#include "myelin/events/room_version.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "service_test_env.hpp"

namespace myelin::service {
namespace {

using test_support::ScratchDir;
constexpr std::int64_t kStart = 1'700'000'000'000;
const std::string kAlice = "@alice:localhost";
const std::string kBob = "@bob:localhost";
const std::string kCarol = "@carol:localhost";

Actor actor(const std::string& user, const std::string& device = "DEV") {
    return Actor{user, device};
}

boost::json::object text(const std::string& body) {
    return boost::json::object{{"msgtype", "m.text"}, {"body", body}};
}

class RoomServiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        auth::ensure_sodium();
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        rooms_ = std::make_unique<RoomService>(*db_, clock_, "localhost", key_);
    }
    void TearDown() override {
        rooms_.reset();
        if (db_) db_->close();
    }

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        boost::asio::io_context io;
        auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
        io.run();
        return future.get();
    }

    std::string create(CreateRoomRequest request = {}) {
        auto room = run(rooms_->create_room(actor(kAlice), std::move(request)));
        EXPECT_TRUE(room) << room.error().message;
        return room ? *room : std::string();
    }

    Result<std::string> send(const std::string& user, const std::string& room,
                             const std::string& body, std::optional<std::string> txn = std::nullopt,
                             const std::string& device = "DEV") {
        return run(rooms_->send(actor(user, device), room, "m.room.message", std::nullopt,
                                text(body), std::move(txn)));
    }

    std::vector<storage::EventRecord> all_events(const std::string& room) {
        auto events =
            storage::read_sync<std::vector<storage::EventRecord>>(*db_, [&](storage::ReadTxn& txn) {
                return txn.room_events(room, storage::EventRange{0, 1'000'000, false, 10'000});
            });
        EXPECT_TRUE(events);
        return events ? *events : std::vector<storage::EventRecord>{};
    }

    static boost::json::object pdu(const storage::EventRecord& e) {
        return boost::json::parse(e.json).as_object();
    }

    // Every event verifies, and they form one chain: prev_events = [the previous event],
    // depth = previous + 1.
    void expect_verified_chain(const std::string& room, const events::RoomVersion& version) {
        std::string previous;
        std::int64_t depth = 0;
        for (const auto& e : all_events(room)) {
            SCOPED_TRACE(e.type + " " + e.event_id);
            auto p = pdu(e);
            if (e.redacted_by.empty()) {
                EXPECT_TRUE(events::content_hash_matches(p));
            }
            EXPECT_TRUE(events::verify_event_signature(p, version, "localhost",
                                                       rooms_->builder().verify_keys()));
            auto id = events::compute_event_id(p, version);
            ASSERT_TRUE(id);
            EXPECT_EQ(*id, e.event_id);
            const auto& prev = p.at("prev_events").as_array();
            if (previous.empty()) {
                EXPECT_TRUE(prev.empty());
            } else {
                ASSERT_EQ(prev.size(), 1u);
                EXPECT_EQ(prev[0].as_string(), previous);
            }
            EXPECT_EQ(p.at("depth").as_int64(), depth + 1);
            EXPECT_EQ(e.depth, depth + 1);
            previous = e.event_id;
            depth = e.depth;
        }
    }

    ScratchDir dir_{"myelin-room-test"};
    ManualClock clock_{kStart};
    events::SigningKey key_ = events::SigningKey::generate("test");
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<RoomService> rooms_;
};

TEST_F(RoomServiceTest, CreatedRoomEventsVerifyAndChain) {
    CreateRoomRequest request;
    request.name = "Room";
    request.topic = "Topic";
    request.invite = {kBob};
    request.room_alias_name = "room";
    const std::string room = create(std::move(request));
    ASSERT_FALSE(room.empty());
    auto types = std::vector<std::string>{};
    for (const auto& e : all_events(room)) types.push_back(e.type);
    EXPECT_EQ(types, (std::vector<std::string>{
                         "m.room.create", "m.room.member", "m.room.power_levels",
                         "m.room.canonical_alias", "m.room.join_rules", "m.room.history_visibility",
                         "m.room.guest_access", "m.room.name", "m.room.topic", "m.room.member"}));
    auto create_pdu = pdu(all_events(room).front());
    EXPECT_EQ(create_pdu.at("content").at("creator").as_string(), kAlice);
    EXPECT_EQ(create_pdu.at("content").at("room_version").as_string(), "10");

    ASSERT_TRUE(run(rooms_->membership(actor(kBob), room, MembershipAction::kJoin, "", {})));
    ASSERT_TRUE(send(kBob, room, "hello"));
    expect_verified_chain(room, events::kRoomVersion10);

    // A message's auth_events: create, power levels, the sender's member event.
    auto events = all_events(room);
    auto message = pdu(events.back());
    std::set<std::string> auth;
    for (const auto& id : message.at("auth_events").as_array()) {
        auth.insert(std::string(id.as_string()));
    }
    std::set<std::string> expected{events[0].event_id, events[2].event_id,
                                   events[events.size() - 2].event_id};
    EXPECT_EQ(auth, expected);
    EXPECT_EQ(run(rooms_->resolve_alias("#room:localhost")).value(), room);
}

TEST_F(RoomServiceTest, ConcurrentSendsStayOneChain) {
    const std::string room = create();
    boost::asio::io_context io;
    std::vector<std::future<Result<std::string>>> futures;
    for (int i = 0; i < 40; ++i) {
        futures.push_back(
            boost::asio::co_spawn(io,
                                  rooms_->send(actor(kAlice), room, "m.room.message", std::nullopt,
                                               text("m" + std::to_string(i)), std::nullopt),
                                  boost::asio::use_future));
    }
    io.run();
    std::set<std::string> ids;
    for (auto& f : futures) {
        auto r = f.get();
        ASSERT_TRUE(r) << r.error().message;
        ids.insert(*r);
    }
    EXPECT_EQ(ids.size(), 40u);
    expect_verified_chain(room, events::kRoomVersion10);
}

TEST_F(RoomServiceTest, TheAuthorizationRulesAreEnforced) {
    const std::string room = create();
    // Not a member: refused.
    auto r = send(kBob, room, "hi");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 403);
    // Invited is not joined; joining an invite-only room without an invite is refused.
    auto join = run(rooms_->membership(actor(kCarol), room, MembershipAction::kJoin, "", {}));
    ASSERT_FALSE(join);
    EXPECT_EQ(join.error().status, 403);
    ASSERT_TRUE(run(rooms_->membership(actor(kAlice), room, MembershipAction::kInvite, kBob, {})));
    r = send(kBob, room, "hi");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 403);
    ASSERT_TRUE(run(rooms_->membership(actor(kBob), room, MembershipAction::kJoin, "", {})));
    ASSERT_TRUE(send(kBob, room, "hi"));
    // Bob (level 0) may neither kick Alice nor change the power levels.
    auto kick = run(rooms_->membership(actor(kBob), room, MembershipAction::kKick, kAlice, {}));
    ASSERT_FALSE(kick);
    EXPECT_EQ(kick.error().status, 403);
    auto pl = run(rooms_->send(actor(kBob), room, "m.room.power_levels", "",
                               boost::json::object{{"users", {{kBob, 100}}}}, std::nullopt));
    ASSERT_FALSE(pl);
    EXPECT_EQ(pl.error().status, 403);
    // Alice bans Bob: he can no longer send or join.
    ASSERT_TRUE(run(rooms_->membership(actor(kAlice), room, MembershipAction::kBan, kBob, {})));
    r = send(kBob, room, "still here?");
    ASSERT_FALSE(r);
    auto rejoin = run(rooms_->membership(actor(kBob), room, MembershipAction::kJoin, "", {}));
    ASSERT_FALSE(rejoin);
    EXPECT_EQ(rejoin.error().status, 403);
    // Unban of someone not banned is refused; unban of Bob works.
    auto unban = run(rooms_->membership(actor(kAlice), room, MembershipAction::kUnban, kCarol, {}));
    ASSERT_FALSE(unban);
    EXPECT_EQ(unban.error().status, 403);
    EXPECT_TRUE(run(rooms_->membership(actor(kAlice), room, MembershipAction::kUnban, kBob, {})));
    expect_verified_chain(room, events::kRoomVersion10);
}

TEST_F(RoomServiceTest, TransactionIdsAreIdempotentPerDevice) {
    const std::string room = create();
    auto first = send(kAlice, room, "once", "t1");
    auto again = send(kAlice, room, "once", "t1");
    auto other_device = send(kAlice, room, "once", "t1", "OTHER");
    ASSERT_TRUE(first && again && other_device);
    EXPECT_EQ(*first, *again);
    EXPECT_NE(*first, *other_device);
    std::size_t messages = 0;
    for (const auto& e : all_events(room)) messages += e.type == "m.room.message" ? 1 : 0;
    EXPECT_EQ(messages, 2u);
}

TEST_F(RoomServiceTest, RedactionKeepsSignatureAndIdValidInBothVersions) {
    for (const auto* version : {&events::kRoomVersion10, &events::kRoomVersion11}) {
        SCOPED_TRACE(std::string(version->id));
        CreateRoomRequest request;
        request.room_version = std::string(version->id);
        const std::string room = create(std::move(request));
        auto msg = send(kAlice, room, "secret");
        ASSERT_TRUE(msg);
        auto redaction = run(rooms_->redact(actor(kAlice), room, *msg, "oops", "r1"));
        ASSERT_TRUE(redaction) << redaction.error().message;
        auto stored = storage::read_sync<std::optional<storage::EventRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.find_event(*msg); });
        ASSERT_TRUE(stored && *stored);
        EXPECT_EQ((*stored)->redacted_by, *redaction);
        auto p = pdu(**stored);
        EXPECT_TRUE(p.at("content").as_object().empty());
        EXPECT_FALSE(events::content_hash_matches(p));
        auto red = storage::read_sync<std::optional<storage::EventRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.find_event(*redaction); });
        ASSERT_TRUE(red && *red);
        auto red_pdu = pdu(**red);
        if (version->redacts_in_content) {
            EXPECT_EQ(red_pdu.at("content").at("redacts").as_string(), *msg);
            EXPECT_FALSE(red_pdu.contains("redacts"));
        } else {
            EXPECT_EQ(red_pdu.at("redacts").as_string(), *msg);
        }
        expect_verified_chain(room, *version);
    }
}

TEST_F(RoomServiceTest, RedactingSomeoneElsesEventNeedsTheRedactLevel) {
    CreateRoomRequest request;
    request.preset = "public_chat";
    const std::string room = create(std::move(request));
    ASSERT_TRUE(run(rooms_->membership(actor(kBob), room, MembershipAction::kJoin, "", {})));
    auto alices = send(kAlice, room, "mine");
    ASSERT_TRUE(alices);
    auto refused = run(rooms_->redact(actor(kBob), room, *alices, std::nullopt, "r"));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().status, 403);
    auto bobs = send(kBob, room, "his");
    ASSERT_TRUE(bobs);
    EXPECT_TRUE(run(rooms_->redact(actor(kBob), room, *bobs, std::nullopt, "r")));
    EXPECT_TRUE(run(rooms_->redact(actor(kAlice), room, *alices, std::nullopt, "r")));
}

TEST_F(RoomServiceTest, OversizedEventsAndUnsupportedVersionsAreRefused) {
    const std::string room = create();
    auto big = send(kAlice, room, std::string(70'000, 'x'));
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().status, 413);
    EXPECT_EQ(big.error().errcode, "M_TOO_LARGE");
    CreateRoomRequest request;
    request.room_version = "9";
    auto r = run(rooms_->create_room(actor(kAlice), std::move(request)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errcode, "M_UNSUPPORTED_ROOM_VERSION");
}

}  // namespace
}  // namespace myelin::service
