// The last-seen tracker against a real SQLite database: sightings coalesce per device (never per
// token), a flush writes one batch in ONE write job, batches are bounded and fair, failed writes
// are retried, stop() writes what is left; plus the [devices] config key.

#include "myelin/service/activity_tracker.hpp"

#include <gtest/gtest.h>

#include "myelin/core/config.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "counting_database.hpp"
#include "service_test_env.hpp"

namespace myelin::service {
namespace {

constexpr std::int64_t kStart = 1'700'000'000'000;
constexpr auto kInterval = std::chrono::hours(1);  // the thread never fires on its own in tests

using test_support::CountingDatabase;
using test_support::ScratchDir;

class ActivityTrackerTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        counting_ = std::make_unique<CountingDatabase>(*db_);
        auto made = storage::write_sync<bool>(*db_, [](storage::WriteTxn& txn) -> Result<bool> {
            storage::UserRecord user{"@alice:localhost", "", false, false, false, kStart};
            if (auto r = txn.insert_user(user); !r) return r.error();
            return true;
        });
        ASSERT_TRUE(made);
    }

    void TearDown() override {
        if (db_) db_->close();
    }

    void add_devices(int n, const std::string& stem = "DEV") {
        auto made = storage::write_sync<bool>(*db_, [&](storage::WriteTxn& txn) -> Result<bool> {
            for (int i = 0; i < n; ++i) {
                storage::DeviceRecord d;
                d.user_id = "@alice:localhost";
                d.device_id = stem + std::to_string(i);
                d.created_ts = kStart;
                if (auto r = txn.ensure_device(d); !r) return r.error();
            }
            return true;
        });
        ASSERT_TRUE(made);
    }

    storage::DeviceRecord device(const std::string& id) {
        auto found = storage::read_sync<std::optional<storage::DeviceRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.find_device("@alice:localhost", id); });
        EXPECT_TRUE(found && *found) << id;
        if (!found || !*found) return {};
        return **found;
    }

    ScratchDir dir_{"myelin-activity-test"};
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<CountingDatabase> counting_;
    ManualClock clock_{kStart};
};

TEST_F(ActivityTrackerTest, TouchesOfOneDeviceCoalesceIntoItsNewestSighting) {
    add_devices(1);
    ActivityTracker tracker(*counting_, clock_, kInterval);
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.1", kStart + 10);
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.2", kStart + 30);
    // Older than the pending sighting (requests finish out of order): ignored.
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.3", kStart + 20);
    EXPECT_EQ(tracker.pending(), 1U);
    EXPECT_EQ(counting_->writes.load(), 0) << "touch() must never reach storage";

    auto flushed = tracker.flush();
    ASSERT_TRUE(flushed) << flushed.error().message;
    EXPECT_EQ(*flushed, 1U);
    EXPECT_EQ(tracker.pending(), 0U);
    auto d = device("DEV0");
    EXPECT_EQ(d.last_seen_ts, kStart + 30);
    EXPECT_EQ(d.last_seen_ip, "10.0.0.2");
}

TEST_F(ActivityTrackerTest, RepeatedSightingsOfASessionSkipTheTrackerWithinTheResolution) {
    add_devices(1);
    // With a 1 h interval the resolution is capped at 1 s.
    ActivityTracker tracker(*counting_, clock_, kInterval);
    ASSERT_EQ(tracker.resolution(), std::chrono::milliseconds(1000));
    auth::TokenCache cache;
    storage::SessionRecord record;
    record.session_id = 1;
    record.user_id = "@alice:localhost";
    record.device_id = "DEV0";
    auto ref = cache.session_for(record);
    auth::CachedSession& session = *ref;

    tracker.touch_session(session, "10.0.0.1");
    ASSERT_TRUE(tracker.flush());
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart);
    // Within the resolution from the same address: nothing becomes pending.
    clock_.advance_ms(999);
    tracker.touch_session(session, "10.0.0.1");
    EXPECT_EQ(tracker.pending(), 0U);
    // A new address is recorded at once, however soon.
    tracker.touch_session(session, "10.0.0.2");
    EXPECT_EQ(tracker.pending(), 1U);
    ASSERT_TRUE(tracker.flush());
    EXPECT_EQ(device("DEV0").last_seen_ip, "10.0.0.2");
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart + 999);
    // Once the resolution has passed, the same address counts again.
    clock_.advance_ms(1000);
    tracker.touch_session(session, "10.0.0.2");
    EXPECT_EQ(tracker.pending(), 1U);
    ASSERT_TRUE(tracker.flush());
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart + 1999);
    // A short flush interval makes the resolution as fine.
    ActivityTracker fine(*counting_, clock_, std::chrono::milliseconds(200));
    EXPECT_EQ(fine.resolution(), std::chrono::milliseconds(200));
}

TEST_F(ActivityTrackerTest, SameDeviceIdOfAnotherUserIsAnotherEntry) {
    ActivityTracker tracker(*counting_, clock_, kInterval);
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.1", kStart);
    tracker.touch("@bob:localhost", "DEV0", "10.0.0.1", kStart);
    tracker.touch("@alice:localhost", "DEV1", "10.0.0.1", kStart);
    EXPECT_EQ(tracker.pending(), 3U);
}

TEST_F(ActivityTrackerTest, OneFlushWritesTheWholeBatchInOneWriteJob) {
    add_devices(300);
    ActivityTracker tracker(*counting_, clock_, kInterval);
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 300; ++i) {
            tracker.touch("@alice:localhost", "DEV" + std::to_string(i), "192.0.2.7",
                          kStart + 100 * round + i);
        }
    }
    EXPECT_EQ(tracker.pending(), 300U);
    auto flushed = tracker.flush();
    ASSERT_TRUE(flushed);
    EXPECT_EQ(*flushed, 300U);
    EXPECT_EQ(counting_->writes.load(), 1);
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart + 200);
    EXPECT_EQ(device("DEV299").last_seen_ts, kStart + 200 + 299);
    EXPECT_EQ(device("DEV150").last_seen_ip, "192.0.2.7");

    // Nothing pending: no write at all.
    ASSERT_TRUE(tracker.flush());
    EXPECT_EQ(counting_->writes.load(), 1);
}

TEST_F(ActivityTrackerTest, BatchesAreBoundedAndEveryDeviceGetsItsTurn) {
    add_devices(100);
    ActivityTracker tracker(*counting_, clock_, kInterval, /*max_batch=*/30);
    for (int i = 0; i < 100; ++i) {
        tracker.touch("@alice:localhost", "DEV" + std::to_string(i), "10.1.1.1", kStart + 1);
    }
    std::size_t total = 0;
    for (int flush = 0; flush < 4; ++flush) {
        // A busy device keeps touching between flushes; it must not push the others out.
        tracker.touch("@alice:localhost", "DEV0", "10.1.1.1", kStart + 2 + flush);
        auto flushed = tracker.flush();
        ASSERT_TRUE(flushed);
        EXPECT_LE(*flushed, 30U);
        total += *flushed;
    }
    EXPECT_EQ(counting_->writes.load(), 4);
    EXPECT_GE(total, 100U);
    for (int i = 0; i < 100; ++i) {
        EXPECT_GT(device("DEV" + std::to_string(i)).last_seen_ts, 0) << "DEV" << i;
    }
    // flush(true) takes everything regardless of the bound.
    for (int i = 0; i < 100; ++i) {
        tracker.touch("@alice:localhost", "DEV" + std::to_string(i), "10.1.1.2", kStart + 50);
    }
    auto all = tracker.flush(true);
    ASSERT_TRUE(all);
    EXPECT_EQ(*all, 100U);
    EXPECT_EQ(tracker.pending(), 0U);
}

TEST_F(ActivityTrackerTest, FailedWriteKeepsTheSightingsForTheNextFlush) {
    add_devices(2);
    ActivityTracker tracker(*counting_, clock_, kInterval);
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.1", kStart + 5);
    tracker.touch("@alice:localhost", "DEV1", "10.0.0.1", kStart + 5);
    counting_->fail_writes = true;
    EXPECT_FALSE(tracker.flush());
    EXPECT_EQ(tracker.pending(), 2U);
    // A newer sighting that arrived meanwhile wins over the one put back.
    tracker.touch("@alice:localhost", "DEV1", "10.0.0.9", kStart + 9);
    counting_->fail_writes = false;
    auto flushed = tracker.flush();
    ASSERT_TRUE(flushed);
    EXPECT_EQ(*flushed, 2U);
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart + 5);
    EXPECT_EQ(device("DEV1").last_seen_ts, kStart + 9);
    EXPECT_EQ(device("DEV1").last_seen_ip, "10.0.0.9");
}

TEST_F(ActivityTrackerTest, DeletedDeviceIsNotRecreatedAndDoesNotFailTheBatch) {
    add_devices(1);
    ActivityTracker tracker(*counting_, clock_, kInterval);
    tracker.touch("@alice:localhost", "GONE", "10.0.0.1", kStart);
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.1", kStart);
    auto flushed = tracker.flush();
    ASSERT_TRUE(flushed) << flushed.error().message;
    auto gone = storage::read_sync<std::optional<storage::DeviceRecord>>(
        *db_, [](storage::ReadTxn& txn) { return txn.find_device("@alice:localhost", "GONE"); });
    ASSERT_TRUE(gone);
    EXPECT_FALSE(*gone);
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart);
}

TEST_F(ActivityTrackerTest, StopWritesWhatIsLeftEvenWithoutTheThread) {
    add_devices(1);
    {
        ActivityTracker tracker(*counting_, clock_, kInterval, /*max_batch=*/1);
        tracker.start();
        tracker.touch("@alice:localhost", "DEV0", "2001:db8::1");  // at the clock's time
        tracker.stop();
        EXPECT_EQ(tracker.pending(), 0U);
        tracker.stop();  // idempotent
    }
    EXPECT_EQ(device("DEV0").last_seen_ts, kStart);
    EXPECT_EQ(device("DEV0").last_seen_ip, "2001:db8::1");
}

// The server calls stop() at shutdown and again from its destructor, after the database has
// closed: a final write that failed (a full disk) is tried once and reported once.
TEST_F(ActivityTrackerTest, AFailedFinalWriteIsNotRetriedByALaterStop) {
    add_devices(1);
    ActivityTracker tracker(*counting_, clock_, kInterval);
    tracker.touch("@alice:localhost", "DEV0", "10.0.0.1", kStart + 5);
    counting_->fail_writes = true;
    const int before = counting_->writes.load();
    tracker.stop();
    EXPECT_EQ(counting_->writes.load(), before + 1);
    tracker.stop();
    EXPECT_EQ(counting_->writes.load(), before + 1);
}

TEST(DevicesConfig, LastSeenFlushDefaultsToFiveSecondsAndRefusesTinyIntervals) {
    auto defaults = parse_config(default_config_text(), "/x");
    ASSERT_TRUE(defaults) << defaults.error().message;
    EXPECT_EQ(defaults->devices.last_seen_flush, std::chrono::milliseconds(5000));
    auto set = parse_config("[devices]\nlast_seen_flush = \"250ms\"\n", "/x");
    ASSERT_TRUE(set) << set.error().message;
    EXPECT_EQ(set->devices.last_seen_flush, std::chrono::milliseconds(250));
    auto tiny = parse_config("[devices]\nlast_seen_flush = \"10ms\"\n", "/x");
    ASSERT_FALSE(tiny);
    EXPECT_NE(tiny.error().message.find("devices.last_seen_flush"), std::string::npos);
    auto zero = parse_config("[devices]\nlast_seen_flush = \"0\"\n", "/x");
    EXPECT_FALSE(zero);
}

}  // namespace
}  // namespace myelin::service
