// The housekeeping service against a real SQLite file: it deletes exactly the rows older than
// each table's retention (none of the security events with retention 0) and the expired UIA
// sessions (releasing the registration token uses they held), never more than
// max_batch rows per write job, counts what it deleted in
// myelin_housekeeping_deleted_rows_total{table}, reports storage errors, and its thread prunes at
// start and every interval and stops cleanly.

#include "myelin/service/housekeeping.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/core/metrics.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "counting_database.hpp"
#include "service_test_env.hpp"

namespace myelin::service {
namespace {

using test_support::CountingDatabase;
using test_support::ScratchDir;
constexpr std::int64_t kNow = 1'700'000'000'000;
constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kDay = 24 * kHour;

metrics::Counter& deleted(const char* table) {
    return metrics::counter("myelin_housekeeping_deleted_rows_total", "", {{"table", table}});
}

class HousekeepingTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        counting_ = std::make_unique<CountingDatabase>(*db_);
    }

    void TearDown() override {
        housekeeping_.reset();
        db_->close();
    }

    // A housekeeping service over the counting database with the default retentions.
    Housekeeping& make(int max_batch = Housekeeping::kDefaultMaxBatch) {
        housekeeping_ = std::make_unique<Housekeeping>(*counting_, clock_, config_, max_batch);
        return *housekeeping_;
    }

    // Security events of one user at these times, in one write job.
    void add_events(const std::vector<std::int64_t>& times) {
        auto r = storage::write_sync<void>(*db_, [&](storage::WriteTxn& txn) -> Result<void> {
            for (std::int64_t ts : times) {
                storage::SecurityEventRecord event{0, "@alice:localhost", "", ts, "login", ""};
                if (auto ok = txn.insert_security_event(event); !ok) return ok.error();
            }
            return {};
        });
        ASSERT_TRUE(r) << r.error().message;
    }

    // One revoked session per time (so one revocation log entry each), in one write job.
    void add_revocations(const std::vector<std::int64_t>& times) {
        auto r = storage::write_sync<void>(*db_, [&](storage::WriteTxn& txn) -> Result<void> {
            (void)txn.insert_user({"@alice:localhost", "", false, false, false, 1});
            for (std::int64_t ts : times) {
                storage::SessionRecord session;
                session.user_id = "@alice:localhost";
                session.device_id = "D";
                session.created_ts = 1;
                auto id = txn.insert_session(session);
                if (!id) return id.error();
                if (auto ok = txn.revoke_session(*id, ts, storage::RevokeReason::kLogout); !ok) {
                    return ok.error();
                }
            }
            return {};
        });
        ASSERT_TRUE(r) << r.error().message;
    }

    std::vector<std::int64_t> event_times() {
        auto events = storage::read_sync<std::vector<storage::SecurityEventRecord>>(
            *db_,
            [](storage::ReadTxn& txn) { return txn.security_events("@alice:localhost", 1000); });
        EXPECT_TRUE(events);
        std::vector<std::int64_t> out;
        for (const auto& e : *events) out.insert(out.begin(), e.ts);  // oldest first
        return out;
    }

    std::vector<std::int64_t> log_times() {
        auto log = storage::read_sync<std::vector<storage::RevocationRecord>>(
            *db_, [](storage::ReadTxn& txn) { return txn.revocations_since(0, 1000); });
        EXPECT_TRUE(log);
        std::vector<std::int64_t> out;
        for (const auto& r : *log) out.push_back(r.ts);
        return out;
    }

    ScratchDir dir_{"myelin-housekeeping-test"};
    ManualClock clock_{kNow};
    HousekeepingConfig config_;  // the defaults: 10m, 1h, 90d
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<CountingDatabase> counting_;
    std::unique_ptr<Housekeeping> housekeeping_;
};

TEST_F(HousekeepingTest, MetricsExistAtZeroFromConstruction) {
    make();
    const std::string text = metrics::render_prometheus();
    EXPECT_NE(text.find("myelin_housekeeping_deleted_rows_total{table=\"revocation_log\"} 0"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("myelin_housekeeping_deleted_rows_total{table=\"security_events\"} 0"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("myelin_housekeeping_deleted_rows_total{table=\"uia_sessions\"} 0"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("myelin_housekeeping_deleted_rows_total{table=\"to_device_txns\"} 0"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("myelin_housekeeping_deleted_rows_total{table=\"device_list_changes\"} 0"),
              std::string::npos)
        << text;
}

TEST_F(HousekeepingTest, OldToDeviceTransactionsAndSupersededDeviceListChangesGo) {
    const std::int64_t retention =
        std::chrono::duration_cast<std::chrono::milliseconds>(Housekeeping::kToDeviceTxnRetention)
            .count();
    auto r = storage::write_sync<void>(*db_, [&](storage::WriteTxn& txn) -> Result<void> {
        for (auto [id, ts] : std::vector<std::pair<const char*, std::int64_t>>{
                 {"old", kNow - retention - 1}, {"edge", kNow - retention}, {"new", kNow}}) {
            if (auto ok = txn.insert_to_device_txn("@s:x", "S", id, ts); !ok) return ok.error();
        }
        for (const char* device : {"A", "A", "B", "A"}) {
            if (auto ok = txn.record_device_list_change("@a:x", device); !ok) return ok.error();
        }
        return {};
    });
    ASSERT_TRUE(r) << r.error().message;
    const auto txns_before = deleted("to_device_txns").value();
    const auto changes_before = deleted("device_list_changes").value();

    auto counts = make().run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->to_device_txns, 1);
    EXPECT_EQ(counts->device_list_changes, 2);  // A's first two; B's and A's last stay
    EXPECT_EQ(deleted("to_device_txns").value(), txns_before + 1);
    EXPECT_EQ(deleted("device_list_changes").value(), changes_before + 2);

    auto fresh = storage::write_sync<bool>(*db_, [](storage::WriteTxn& txn) {
        return txn.insert_to_device_txn("@s:x", "S", "old", kNow);
    });
    ASSERT_TRUE(fresh);
    EXPECT_TRUE(*fresh);  // pruned, so no longer a retry
    auto retry = storage::write_sync<bool>(*db_, [](storage::WriteTxn& txn) {
        return txn.insert_to_device_txn("@s:x", "S", "edge", kNow);
    });
    ASSERT_TRUE(retry);
    EXPECT_FALSE(*retry);  // exactly at the cutoff: kept
    auto changes = storage::read_sync<std::vector<storage::DeviceListChangeRecord>>(
        *db_, [](storage::ReadTxn& txn) { return txn.device_list_changes_since(0, 10); });
    ASSERT_TRUE(changes);
    ASSERT_EQ(changes->size(), 2u);
    EXPECT_EQ((*changes)[0].stream_pos, 3);
    EXPECT_EQ((*changes)[1].stream_pos, 4);
}

TEST_F(HousekeepingTest, ExpiredUiaSessionsGoAndReleaseTheTokenUsesTheyHeld) {
    auto added = storage::write_sync<void>(*db_, [](storage::WriteTxn& txn) -> Result<void> {
        storage::RegistrationTokenRecord token;
        token.token = "held";
        token.uses_allowed = 5;
        token.created_ts = 1;
        if (auto r = txn.insert_registration_token(token); !r) return r.error();
        // Two reservations, as two UIA sessions took them.
        if (auto r = txn.update_registration_token_counts("held", 2, 0); !r) return r.error();
        const std::int64_t lifetime = UiaEngine::kSessionLifetimeMs;
        const std::vector<std::pair<std::string, std::int64_t>> sessions{
            {"expired", kNow - lifetime}, {"young", kNow - lifetime + 1}};
        for (const auto& [id, created] : sessions) {
            storage::UiaSessionRecord s;
            s.session_id = id;
            s.endpoint = "POST /register";
            s.registration = true;
            s.flows = {{"m.login.registration_token", "m.login.dummy"}};
            s.completed = {"m.login.registration_token"};
            s.registration_token = "held";
            s.created_ts = created;
            if (auto r = txn.insert_uia_session(s); !r) return r.error();
        }
        return {};
    });
    ASSERT_TRUE(added) << added.error().message;
    const auto before = deleted("uia_sessions").value();

    auto counts = make().run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->uia_sessions, 1);
    EXPECT_EQ(deleted("uia_sessions").value(), before + 1);
    auto state = storage::read_sync<std::pair<bool, std::int64_t>>(
        *db_, [](storage::ReadTxn& txn) -> Result<std::pair<bool, std::int64_t>> {
            auto expired = txn.find_uia_session("expired");
            if (!expired) return expired.error();
            auto young = txn.find_uia_session("young");
            if (!young) return young.error();
            auto token = txn.find_registration_token("held");
            if (!token) return token.error();
            return std::make_pair(!*expired && *young, (*token)->pending);
        });
    ASSERT_TRUE(state) << state.error().message;
    EXPECT_TRUE(state->first);    // the expired one went, the young one stayed
    EXPECT_EQ(state->second, 1);  // its use came back; the young session's is still held
}

TEST_F(HousekeepingTest, DeletesOnlyRowsOlderThanTheirRetention) {
    add_revocations({kNow - 3 * kHour, kNow - kHour - 1, kNow - kHour, kNow - 60'000});
    add_events({kNow - 100 * kDay, kNow - 90 * kDay - 1, kNow - 90 * kDay, kNow - kDay});
    const auto log_before = deleted("revocation_log").value();
    const auto events_before = deleted("security_events").value();

    auto counts = make().run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->revocation_log, 2);
    EXPECT_EQ(counts->security_events, 2);
    // Exactly at the cutoff is not older than the retention: kept.
    EXPECT_EQ(log_times(), (std::vector<std::int64_t>{kNow - kHour, kNow - 60'000}));
    EXPECT_EQ(event_times(), (std::vector<std::int64_t>{kNow - 90 * kDay, kNow - kDay}));
    EXPECT_EQ(deleted("revocation_log").value(), log_before + 2);
    EXPECT_EQ(deleted("security_events").value(), events_before + 2);

    // Time passes: the next pass takes what has aged since.
    clock_.advance_ms(kDay);
    counts = housekeeping_->run_once();
    ASSERT_TRUE(counts);
    EXPECT_EQ(counts->revocation_log, 2);
    EXPECT_EQ(counts->security_events, 1);
    EXPECT_TRUE(log_times().empty());
    EXPECT_EQ(event_times(), (std::vector<std::int64_t>{kNow - kDay}));
}

TEST_F(HousekeepingTest, ZeroSecurityEventRetentionKeepsEventsForever) {
    config_.security_event_retention = std::chrono::milliseconds(0);
    add_events({1, kNow - 1000 * kDay});
    add_revocations({1});
    auto counts = make().run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->security_events, 0);
    EXPECT_EQ(counts->revocation_log, 1);  // the log is pruned all the same
    EXPECT_EQ(event_times().size(), 2u);
}

TEST_F(HousekeepingTest, EveryWriteJobDeletesAtMostMaxBatchRows) {
    add_events(std::vector<std::int64_t>(7, kNow - 100 * kDay));
    add_revocations(std::vector<std::int64_t>(5, kNow - 2 * kHour));
    Housekeeping& hk = make(3);
    const int writes_before = counting_->writes.load();
    auto counts = hk.run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->revocation_log, 5);
    EXPECT_EQ(counts->security_events, 7);
    // 5 log rows: 3 + 2; 7 events: 3 + 3 + 1; no UIA sessions, to-device transactions or
    // device-list changes: one empty job each. A full batch is followed by another job, a short
    // one ends the table.
    EXPECT_EQ(counting_->writes.load() - writes_before, 2 + 3 + 1 + 1 + 1);
    EXPECT_TRUE(event_times().empty());
    EXPECT_TRUE(log_times().empty());

    // Nothing old left: one (empty) job per table.
    counts = hk.run_once();
    ASSERT_TRUE(counts);
    EXPECT_EQ(counts->revocation_log + counts->security_events + counts->uia_sessions, 0);
    EXPECT_EQ(counting_->writes.load() - writes_before, 2 + 3 + 1 + 1 + 1 + 5);
}

TEST_F(HousekeepingTest, AStoppedServiceEndsItsPassAfterTheCurrentBatch) {
    add_revocations(std::vector<std::int64_t>(5, kNow - 2 * kHour));
    add_events({kNow - 100 * kDay});
    Housekeeping& hk = make(2);
    hk.stop();
    auto counts = hk.run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->revocation_log, 2);
    EXPECT_EQ(counts->security_events, 0);
    EXPECT_EQ(log_times().size(), 3u);
    EXPECT_EQ(event_times().size(), 1u);
}

TEST_F(HousekeepingTest, StorageErrorsAreReturnedAndTheNextPassRetries) {
    add_events({kNow - 100 * kDay});
    Housekeeping& hk = make();
    counting_->fail_writes = true;
    auto failed = hk.run_once();
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().status, 503);
    EXPECT_EQ(event_times().size(), 1u);
    counting_->fail_writes = false;
    auto counts = hk.run_once();
    ASSERT_TRUE(counts) << counts.error().message;
    EXPECT_EQ(counts->security_events, 1);
}

TEST_F(HousekeepingTest, TheThreadPrunesAtStartAndEveryInterval) {
    config_.interval = std::chrono::milliseconds(20);
    add_events({kNow - 100 * kDay});
    Housekeeping& hk = make();
    hk.start();
    auto wait_until_empty = [this] {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!event_times().empty() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return event_times().empty();
    };
    EXPECT_TRUE(wait_until_empty());
    add_events({kNow - 91 * kDay});
    EXPECT_TRUE(wait_until_empty());
    hk.stop();
    hk.stop();  // idempotent
    // Stopped: nothing is pruned any more.
    add_events({kNow - 92 * kDay});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(event_times().size(), 1u);
}

}  // namespace
}  // namespace myelin::service
