// PresenceService's in-memory state (service/presence_service.hpp), with a hand-moved clock:
// states are checked, a new state replaces the status message, "online" marks activity,
// currently_active lasts kActiveWindow, an "online" older than kIdleAfter reads as
// "unavailable", and a user who never set a state is offline with no activity known.

#include "myelin/service/presence_service.hpp"

#include <gtest/gtest.h>

#include "myelin/auth/sodium_init.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "service_test_env.hpp"

namespace myelin::service {
namespace {

constexpr std::int64_t kStart = 1'700'000'000'000;
const std::string kAlice = "@alice:localhost";

class PresenceServiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        presence_ = std::make_unique<PresenceService>(*db_, clock_);
    }

    test_support::ScratchDir dir_{"myelin-presence-test"};
    ManualClock clock_{kStart};
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<PresenceService> presence_;
};

TEST_F(PresenceServiceTest, NeverSetIsOfflineWithNothingKnown) {
    PresenceView v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "offline");
    EXPECT_FALSE(v.last_active_ago);
    EXPECT_FALSE(v.status_msg);
    EXPECT_FALSE(v.currently_active);
}

TEST_F(PresenceServiceTest, OnlyTheThreeStatesAndBoundedMessages) {
    EXPECT_EQ(presence_->set(kAlice, "busy", std::nullopt).error().errcode, "M_INVALID_PARAM");
    EXPECT_EQ(presence_->set(kAlice, "online", std::string(1025, 'x')).error().errcode,
              "M_INVALID_PARAM");
    EXPECT_EQ(presence_->view(kAlice).presence, "offline");
    EXPECT_TRUE(presence_->set(kAlice, "online", std::string(1024, 'x')));
}

TEST_F(PresenceServiceTest, OnlineMarksActivityWhichAgesIntoIdle) {
    ASSERT_TRUE(presence_->set(kAlice, "online", std::string("hi")));
    PresenceView v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "online");
    EXPECT_EQ(v.last_active_ago, 0);
    EXPECT_EQ(v.status_msg, "hi");
    EXPECT_TRUE(v.currently_active);

    clock_.advance_ms(PresenceService::kActiveWindow.count() + 1);
    v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "online");
    EXPECT_FALSE(v.currently_active);
    EXPECT_EQ(v.last_active_ago, PresenceService::kActiveWindow.count() + 1);

    clock_.advance_ms(PresenceService::kIdleAfter.count());
    v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "unavailable");
    EXPECT_FALSE(v.currently_active);

    // Online again: active now.
    ASSERT_TRUE(presence_->set(kAlice, "online", std::nullopt));
    v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "online");
    EXPECT_EQ(v.last_active_ago, 0);
    EXPECT_FALSE(v.status_msg);
}

TEST_F(PresenceServiceTest, OtherStatesKeepTheLastActivityAndReplaceTheMessage) {
    ASSERT_TRUE(presence_->set(kAlice, "online", std::string("hi")));
    clock_.advance_ms(1000);
    ASSERT_TRUE(presence_->set(kAlice, "unavailable", std::nullopt));
    PresenceView v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "unavailable");
    EXPECT_EQ(v.last_active_ago, 1000);
    EXPECT_FALSE(v.status_msg);
    EXPECT_FALSE(v.currently_active);
    ASSERT_TRUE(presence_->set(kAlice, "offline", std::string("away")));
    v = presence_->view(kAlice);
    EXPECT_EQ(v.presence, "offline");
    EXPECT_EQ(v.status_msg, "away");
    EXPECT_FALSE(presence_->view("@bob:localhost").last_active_ago);
}

}  // namespace
}  // namespace myelin::service
