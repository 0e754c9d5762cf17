// The PostgreSQL backend where it differs from SQLite: the session settings, login failures that
// must not show the password, the bounded pool and its timeout, connections killed by the server
// (503, then recovery without a restart), two Database objects (two processes) racing one
// rotation on one database, and the session feed and wake channel between such processes.

#include "myelin/storage/postgres/pg_database.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include "myelin/core/log.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/postgres/pg_connection.hpp"
#include "myelin/storage/postgres/pg_session_feed.hpp"
#include "myelin/storage/postgres/pg_wake_channel.hpp"

#include "storage_test_support.hpp"
#include "test_database.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_hash;
using testing::make_session;
using testing::make_user;
using testing::PostgresTestDatabase;
using testing::user_exists;

class PostgresDatabaseTest : public ::testing::Test {
protected:
    void SetUp() override {
        MYELIN_REQUIRE_POSTGRES();
        pgdb_ = std::make_unique<PostgresTestDatabase>();
    }

    std::unique_ptr<Database> open(const PostgresOptions& options) {
        auto db = open_postgres(options);
        EXPECT_TRUE(db) << (db ? "" : db.error().message);
        return db ? std::move(*db) : nullptr;
    }

    std::unique_ptr<PostgresTestDatabase> pgdb_;
};

// Holds a connection inside a write job until release(); `after_entered` runs in the job once
// the test has been told it entered (e.g. a statement that then fails).
class JobGate {
public:
    JobGate(Database& db, std::function<Result<void>(WriteTxn&)> before,
            std::function<Result<void>(WriteTxn&)> after = {}, SharedCounters counters = 0) {
        WriteJob job;
        job.counters = counters;
        job.run = [this, before = std::move(before),
                   after = std::move(after)](WriteTxn& txn) -> Result<void> {
            if (before) {
                if (auto r = before(txn); !r) return r;
            }
            entered_.set_value();
            released_.get_future().wait();
            if (after) return after(txn);
            return {};
        };
        job.on_committed = [this](const Result<void>& r) { result_.set_value(r); };
        db.post_write(std::move(job));
        entered_.get_future().wait();
    }
    void release() { released_.set_value(); }
    Result<void> result() { return result_future_.get(); }

private:
    std::promise<void> entered_;
    std::promise<void> released_;
    std::promise<Result<void>> result_;
    std::future<Result<void>> result_future_ = result_.get_future();
};

TEST(PostgresConnection, SynchronousCommitFollowsTheSetting) {
    MYELIN_REQUIRE_POSTGRES();
    PostgresTestDatabase pgdb;
    for (bool on : {true, false}) {
        pg::ConnectionSettings settings = connection_settings(pgdb.options());
        settings.synchronous_commit = on;
        auto conn = pg::Connection::open(settings);
        ASSERT_TRUE(conn) << conn.error().message;
        auto rows = (*conn)->query("SHOW synchronous_commit", pg::Params{});
        ASSERT_TRUE(rows) << rows.error().message;
        EXPECT_EQ(rows->row(0).column_text(0), on ? "on" : "off");
        auto zone = (*conn)->query("SHOW TimeZone", pg::Params{});
        ASSERT_TRUE(zone);
        EXPECT_EQ(zone->row(0).column_text(0), "UTC");
    }
}

TEST(PostgresConnection, TextWithANulIsRefusedNotCutShort) {
    // libpq sends text parameters NUL-terminated: "a\0b" would arrive as "a".
    MYELIN_REQUIRE_POSTGRES();
    PostgresTestDatabase pgdb;
    pg::ConnectionSettings settings = connection_settings(pgdb.options());
    auto conn = pg::Connection::open(settings);
    ASSERT_TRUE(conn) << conn.error().message;
    const std::string with_nul("a\0b", 3);
    auto rows = (*conn)->query("SELECT $1::text", pg::Params{}.add_text(with_nul));
    ASSERT_FALSE(rows);
    EXPECT_EQ(rows.error().status, 400);
    EXPECT_EQ(rows.error().errcode, "M_INVALID_PARAM");
    auto each = (*conn)->query_each("SELECT $1::text", pg::Params{}.add_text(with_nul),
                                    [](const pg::Row&) -> Result<void> { return {}; });
    ASSERT_FALSE(each);
    EXPECT_EQ(each.error().status, 400);
    // The connection is still usable.
    auto ok = (*conn)->query("SELECT $1::text", pg::Params{}.add_text("a"));
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->row(0).column_text(0), "a");
}

TEST_F(PostgresDatabaseTest, AWrongPasswordIsA503ThatNeverShowsThePassword) {
    PostgresOptions options = pgdb_->options();
    options.password = "not-the-password-4711";
    auto db = open_postgres(options);
    ASSERT_FALSE(db);
    EXPECT_EQ(db.error().status, 503);
    EXPECT_EQ(db.error().retry_after_s, 5);
    EXPECT_EQ(db.error().message.find("not-the-password-4711"), std::string::npos)
        << db.error().message;
    EXPECT_NE(db.error().message.find(options.user + "@" + options.host), std::string::npos)
        << db.error().message;
}

TEST_F(PostgresDatabaseTest, AnUnreachableServerIsA503) {
    PostgresOptions options = pgdb_->options();
    options.port = 1;  // nothing listens there
    auto db = open_postgres(options);
    ASSERT_FALSE(db);
    EXPECT_EQ(db.error().status, 503);
    EXPECT_NE(db.error().message.find(":1/"), std::string::npos) << db.error().message;
}

TEST_F(PostgresDatabaseTest, InvalidOptionsAreRefused) {
    PostgresOptions options = pgdb_->options();
    options.pool_size = 0;
    EXPECT_FALSE(open_postgres(options));
    options.pool_size = 1;
    options.max_attempts = 0;
    EXPECT_FALSE(open_postgres(options));
}

TEST_F(PostgresDatabaseTest, JobsWaitingLongerThanThePoolTimeoutFailWith503) {
    PostgresOptions options = pgdb_->options();
    options.pool_size = 1;
    options.pool_timeout = std::chrono::milliseconds(300);
    auto db = open(options);
    ASSERT_TRUE(db);

    JobGate gate(*db, {});  // holds the only connection
    const auto start = std::chrono::steady_clock::now();
    std::promise<bool> read_got_txn;
    db->post_read([&](ReadTxn* txn) { read_got_txn.set_value(txn != nullptr); });
    auto waited =
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@late:x")); });
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(read_got_txn.get_future().get());
    ASSERT_FALSE(waited);
    EXPECT_EQ(waited.error().status, 503);
    EXPECT_EQ(waited.error().retry_after_s, 5);
    EXPECT_NE(waited.error().message.find("busy"), std::string::npos) << waited.error().message;
    EXPECT_GE(elapsed, std::chrono::milliseconds(300));
    EXPECT_LT(elapsed, std::chrono::seconds(5));  // answered while the connection is still held

    gate.release();
    EXPECT_TRUE(gate.result());
    EXPECT_FALSE(user_exists(*db, "@late:x"));  // the timed-out job never ran
    auto later =
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@now:x")); });
    ASSERT_TRUE(later) << later.error().message;
    EXPECT_TRUE(*later);
}

TEST_F(PostgresDatabaseTest, ThePoolRunsJobsInParallel) {
    PostgresOptions options = pgdb_->options();
    options.pool_size = 2;
    auto db = open(options);
    ASSERT_TRUE(db);
    // With one connection held, a second job still runs.
    JobGate gate(*db, {});
    EXPECT_FALSE(user_exists(*db, "@x:x"));
    gate.release();
    EXPECT_TRUE(gate.result());
}

TEST_F(PostgresDatabaseTest, AConnectionKilledMidJobFailsThatJobWith503ThenRecovers) {
    PostgresOptions options = pgdb_->options();
    options.pool_size = 1;
    auto db = open(options);
    ASSERT_TRUE(db);

    JobGate gate(
        *db,
        [](WriteTxn& txn) -> Result<void> {
            auto r = txn.insert_user(make_user("@before-kill:x"));
            if (!r) return r.error();
            return {};
        },
        [](WriteTxn& txn) -> Result<void> {
            auto r = txn.insert_user(make_user("@after-kill:x"));
            if (!r) return r.error();
            return {};
        });
    EXPECT_EQ(pgdb_->terminate_connections(), 1);
    gate.release();
    auto killed = gate.result();
    ASSERT_FALSE(killed);
    EXPECT_EQ(killed.error().status, 503);
    EXPECT_EQ(killed.error().errcode, "M_UNKNOWN");
    EXPECT_EQ(killed.error().retry_after_s, 5);

    // The next jobs reconnect: no restart needed, and nothing of the killed job was committed.
    EXPECT_FALSE(user_exists(*db, "@before-kill:x"));
    EXPECT_FALSE(user_exists(*db, "@after-kill:x"));
    auto again = write_sync<bool>(
        *db, [](WriteTxn& txn) { return txn.insert_user(make_user("@before-kill:x")); });
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_TRUE(*again);
    EXPECT_TRUE(user_exists(*db, "@before-kill:x"));
}

// libpq prints what the server sends unasked (a notice, or the FATAL an idle connection gets
// when PostgreSQL shuts down) straight to stderr, without time or level; it goes to the
// application log instead.
TEST(PostgresConnection, ServerNoticesGoToTheApplicationLogNotRawToStderr) {
    MYELIN_REQUIRE_POSTGRES();
    PostgresTestDatabase pgdb;
    pg::ConnectionSettings settings = connection_settings(pgdb.options());
    auto conn = pg::Connection::open(settings);
    ASSERT_TRUE(conn) << conn.error().message;

    std::ostringstream logged;
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(logged);
    auto logger = myelin::log::app();
    logger->sinks().push_back(sink);
    ::testing::internal::CaptureStderr();
    auto done = (*conn)->exec("DO $$ BEGIN RAISE WARNING 'myelin-notice-probe'; END $$");
    logger->flush();
    const std::string raw = ::testing::internal::GetCapturedStderr();
    logger->sinks().pop_back();
    ASSERT_TRUE(done) << done.error().message;

    EXPECT_NE(logged.str().find("postgresql: the server says: WARNING:  myelin-notice-probe"),
              std::string::npos)
        << logged.str();
    std::istringstream lines(raw);
    for (std::string line; std::getline(lines, line);) {
        EXPECT_NE(line.rfind("WARNING:", 0), 0u) << "printed by libpq: " << line;
    }
}

TEST_F(PostgresDatabaseTest, IdleConnectionsKilledByTheServerAreReopenedWithoutAnError) {
    PostgresOptions options = pgdb_->options();
    options.pool_size = 2;
    auto db = open(options);
    ASSERT_TRUE(db);
    ASSERT_TRUE(
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@a:x")); }));
    EXPECT_EQ(pgdb_->terminate_connections(), 2);
    // Nothing of a job had run when its BEGIN found the connection dead: it is simply reopened.
    for (int i = 0; i < 4; ++i) {
        auto found = read_sync<std::optional<UserRecord>>(
            *db, [](ReadTxn& txn) { return txn.find_user("@a:x"); });
        ASSERT_TRUE(found) << found.error().message;
        EXPECT_TRUE(found->has_value());
    }
    // The reads may all have run on the connection reopened first, leaving the other one dead:
    // at least one live connection is killed here, and the write must reopen whichever it gets.
    EXPECT_GE(pgdb_->terminate_connections(), 1);
    auto written =
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@b:x")); });
    ASSERT_TRUE(written) << written.error().message;
}

TEST_F(PostgresDatabaseTest, AJobThatIgnoresAFailedStatementCommitsNothing) {
    auto db = open(pgdb_->options());
    ASSERT_TRUE(db);
    // PostgreSQL aborts the transaction at the first failed statement; a job that carries on
    // regardless must not be told it committed.
    auto r = write_sync<void>(*db, [](WriteTxn& txn) -> Result<void> {
        if (auto u = txn.insert_user(make_user("@kept:x")); !u) return u.error();
        AccessTokenRecord orphan;
        orphan.token_hash = make_hash(1);
        orphan.session_id = 12345;  // no such session: a foreign-key violation
        (void)txn.insert_access_token(orphan);
        return {};
    });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 500);
    EXPECT_FALSE(user_exists(*db, "@kept:x"));
}

// What a refresh does in its write job (service/session_service.cpp, reduced): rotate when the
// presented token is the current one, answer a retry when it is the previous one.
enum class Outcome { kRotated, kRetried, kReused };

Result<Outcome> refresh_job(WriteTxn& txn, const TokenHash& presented, std::uint8_t next_fill) {
    auto lookup = txn.find_refresh_token(presented);
    if (!lookup) return lookup.error();
    if (!*lookup) return errors::internal("the presented token is unknown");
    const auto& s = (*lookup)->session;
    const auto g = (*lookup)->token.generation;
    if (g == s.current_generation) {
        auto cas = txn.update_session_generations(s.session_id, g, g + 1, g);
        if (!cas) return cas.error();
        if (!*cas) return errors::unavailable("Concurrent refresh; retry", 1);
        AccessTokenRecord at;
        at.token_hash = make_hash(next_fill);
        at.session_id = s.session_id;
        at.generation = g + 1;
        if (auto r = txn.insert_access_token(at); !r) return r.error();
        RefreshTokenRecord rt;
        rt.token_hash = make_hash(static_cast<std::uint8_t>(next_fill + 1));
        rt.session_id = s.session_id;
        rt.generation = g + 1;
        if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
        if (auto r = txn.set_sealed_successor(presented, {next_fill}); !r) return r.error();
        return Outcome::kRotated;
    }
    if (g + 1 == s.current_generation) return Outcome::kRetried;
    return Outcome::kReused;
}

TEST_F(PostgresDatabaseTest, TwoProcessesRacingARotationKeepOneLineage) {
    auto first = open(pgdb_->options());
    auto second = open(pgdb_->options());
    ASSERT_TRUE(first && second);
    auto sid = write_sync<std::int64_t>(*first, [](WriteTxn& txn) -> Result<std::int64_t> {
        if (auto u = txn.insert_user(make_user("@r:x")); !u) return u.error();
        if (auto d = txn.ensure_device(make_device("@r:x", "D")); !d) return d.error();
        auto id = txn.insert_session(make_session("@r:x", "D"));
        if (!id) return id.error();
        RefreshTokenRecord rt;
        rt.token_hash = make_hash(2);
        rt.session_id = *id;
        if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
        return *id;
    });
    ASSERT_TRUE(sid) << sid.error().message;

    // Each round, 8 clients (4 through each Database) present the current refresh token at once.
    constexpr int kRounds = 5;
    constexpr int kClients = 8;
    std::uint8_t current_fill = 2;
    for (int round = 0; round < kRounds; ++round) {
        const auto next_fill = static_cast<std::uint8_t>(10 + 2 * round);
        std::latch start(kClients);
        std::vector<std::thread> clients;
        std::vector<Result<Outcome>> results(kClients, Result<Outcome>(Outcome::kReused));
        for (int c = 0; c < kClients; ++c) {
            clients.emplace_back([&, c] {
                Database& db = c % 2 == 0 ? *first : *second;
                start.arrive_and_wait();
                results[static_cast<std::size_t>(c)] = write_sync<Outcome>(db, [&](WriteTxn& txn) {
                    return refresh_job(txn, make_hash(current_fill), next_fill);
                });
            });
        }
        for (auto& t : clients) t.join();
        int rotated = 0;
        int retried = 0;
        for (const auto& r : results) {
            ASSERT_TRUE(r) << "round " << round << ": " << r.error().message;
            if (*r == Outcome::kRotated) ++rotated;
            if (*r == Outcome::kRetried) ++retried;
        }
        EXPECT_EQ(rotated, 1) << "round " << round;
        EXPECT_EQ(retried, kClients - 1) << "round " << round;
        current_fill = static_cast<std::uint8_t>(next_fill + 1);
    }

    auto session = read_sync<std::optional<SessionRecord>>(
        *second, [&](ReadTxn& txn) { return txn.find_session(*sid); });
    ASSERT_TRUE(session && session->has_value());
    EXPECT_EQ((*session)->current_generation, kRounds);
    EXPECT_EQ(pgdb_->query("SELECT count(*) FROM refresh_tokens"),
              std::vector<std::string>{std::to_string(kRounds + 1)});
    EXPECT_EQ(pgdb_->query("SELECT count(DISTINCT generation) FROM access_tokens"),
              std::vector<std::string>{std::to_string(kRounds)});
}

// A write job bumping the global device_lists counter (its own device, so rows never clash).
Result<void> bump_device_lists(WriteTxn& txn, const std::string& device) {
    auto pos = txn.record_device_list_change("@counter:x", device);
    if (!pos) return pos.error();
    return {};
}

// The number of this database's lock requests of `type` ("advisory" for pg_advisory_lock,
// "transactionid" for a row that another open transaction changed), waiting or granted.
int locks(const PostgresTestDatabase& pgdb, const std::string& type, bool granted) {
    auto rows = pgdb.query(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE a.datname = current_database() AND l.locktype = '" +
        type + "' AND l.granted = " + (granted ? "true" : "false"));
    return rows.empty() ? -1 : std::stoi(rows.front());
}
int waiting_for(const PostgresTestDatabase& pgdb, const std::string& type) {
    return locks(pgdb, type, false);
}

// Polls `done` for up to 10 s.
bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 1000; ++i) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
}

TEST_F(PostgresDatabaseTest, JobsNamingASharedCounterWaitTheirTurnInsteadOfLosingARace) {
    // No second attempts: a job that loses a serialization race fails.
    PostgresOptions options = pgdb_->options();
    options.max_attempts = 1;
    auto first = open(options);
    auto second = open(options);  // another process on the same database
    ASSERT_TRUE(first && second);
    // The first job has bumped the counter and is still open.
    JobGate holder(
        *first, [](WriteTxn& txn) { return bump_device_lists(txn, "A"); }, {}, kDeviceListsCounter);
    // The second waits for it before its transaction starts (it would otherwise block on the
    // counter row, then lose to the first's commit).
    auto waiter = std::async(std::launch::async, [&] {
        return write_sync<void>(
            *second, [](WriteTxn& txn) { return bump_device_lists(txn, "B"); },
            kDeviceListsCounter);
    });
    EXPECT_TRUE(eventually([&] { return waiting_for(*pgdb_, "advisory") == 1; }));
    EXPECT_EQ(waiting_for(*pgdb_, "transactionid"), 0);
    holder.release();
    ASSERT_TRUE(holder.result());
    auto waited = waiter.get();
    ASSERT_TRUE(waited) << waited.error().message;

    // Many at once from both processes: every one commits at its first attempt.
    constexpr int kJobs = 24;
    std::latch start(kJobs);
    std::vector<std::future<Result<void>>> results;
    for (int i = 0; i < kJobs; ++i) {
        results.push_back(std::async(std::launch::async, [&, i] {
            start.arrive_and_wait();
            return write_sync<void>(
                i % 2 == 0 ? *first : *second,
                [i](WriteTxn& txn) { return bump_device_lists(txn, "D" + std::to_string(i)); },
                kDeviceListsCounter);
        }));
    }
    for (auto& r : results) {
        auto done = r.get();
        EXPECT_TRUE(done) << done.error().message;
    }
    EXPECT_EQ(pgdb_->query("SELECT count(*) FROM device_list_changes"),
              std::vector<std::string>{std::to_string(kJobs + 2)});
    // No lock outlives its job.
    EXPECT_EQ(locks(*pgdb_, "advisory", true), 0);
}

TEST_F(PostgresDatabaseTest, AJobThatLostARaceOverACounterItDidNotNameQueuesForItsRetry) {
    PostgresOptions options = pgdb_->options();
    options.max_attempts = 2;
    auto db = open(options);
    ASSERT_TRUE(db);
    // Another process holds the device_lists queue (as a job naming it would).
    pg::ConnectionSettings settings = connection_settings(pgdb_->options());
    auto queue_holder = pg::Connection::open(settings);
    ASSERT_TRUE(queue_holder) << queue_holder.error().message;
    // An open job that named nothing has bumped the counter...
    JobGate unnamed(*db, [](WriteTxn& txn) { return bump_device_lists(txn, "A"); });
    // ...so a second one that named nothing blocks on the counter row.
    auto loser = std::async(std::launch::async, [&] {
        return write_sync<void>(*db, [](WriteTxn& txn) { return bump_device_lists(txn, "B"); });
    });
    ASSERT_TRUE(eventually([&] { return waiting_for(*pgdb_, "transactionid") == 1; }));
    ASSERT_TRUE((*queue_holder)->exec("SELECT pg_advisory_lock(7888447738615824386)"));
    // The first commits: the second loses its race, and its retry waits in the queue.
    unnamed.release();
    ASSERT_TRUE(unnamed.result());
    EXPECT_TRUE(eventually([&] { return waiting_for(*pgdb_, "advisory") == 1; }));
    EXPECT_EQ(loser.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
    ASSERT_TRUE((*queue_holder)->exec("SELECT pg_advisory_unlock_all()"));
    auto retried = loser.get();
    ASSERT_TRUE(retried) << retried.error().message;
    EXPECT_EQ(pgdb_->query("SELECT count(*) FROM device_list_changes"),
              std::vector<std::string>{"2"});
}

// Collects what a session feed delivers, for tests.
class FeedRecorder {
public:
    void on_change(const SessionChange& c) {
        std::lock_guard lock(mu_);
        changes_.push_back(c);
        cv_.notify_all();
    }
    void on_gap() {
        std::lock_guard lock(mu_);
        ++gaps_;
        cv_.notify_all();
    }
    // Waits (up to 5 s) until at least `n` changes arrived; returns them all.
    std::vector<SessionChange> wait_for(std::size_t n) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(5), [&] { return changes_.size() >= n; });
        return changes_;
    }
    int wait_for_gap() {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(10), [&] { return gaps_ > 0; });
        return gaps_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<SessionChange> changes_;
    int gaps_ = 0;
};

TEST(PostgresSessionFeed, PayloadsParseAndNoiseIsIgnored) {
    auto r = pg::parse_session_change("r 42 3");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->kind, SessionChange::Kind::kRevoked);
    EXPECT_EQ(r->session_id, 42);
    EXPECT_EQ(r->reason, RevokeReason::kRefreshReuse);
    auto a = pg::parse_session_change("a 7 12 11");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->kind, SessionChange::Kind::kAdvanced);
    EXPECT_EQ(a->session_id, 7);
    EXPECT_EQ(a->current_generation, 12);
    EXPECT_EQ(a->used_generation, 11);
    for (const char* bad : {"", "r", "r 1", "r 1 0", "a 1 2", "a 1 2 3 4", "x 1 2", "r1 2",
                            "a 1 2 z", "r 1 2 ", "r -1"}) {
        EXPECT_FALSE(pg::parse_session_change(bad)) << bad;
    }
}

// Rotations and revocations committed through one Database reach the feed of another
// (another process), once each, and only when they commit.
TEST_F(PostgresDatabaseTest, TheSessionFeedDeliversCommittedChangesOnly) {
    auto writer = open(pgdb_->options());
    auto other = open(pgdb_->options());
    ASSERT_TRUE(writer && other);
    auto feed = other->open_session_feed();
    ASSERT_TRUE(feed);
    FeedRecorder recorder;
    ASSERT_TRUE(feed->start([&](const SessionChange& c) { recorder.on_change(c); },
                            [&] { recorder.on_gap(); }));

    auto sid = write_sync<std::int64_t>(*writer, [](WriteTxn& txn) -> Result<std::int64_t> {
        if (auto u = txn.insert_user(make_user("@f:x")); !u) return u.error();
        if (auto d = txn.ensure_device(make_device("@f:x", "D")); !d) return d.error();
        return txn.insert_session(make_session("@f:x", "D"));
    });
    ASSERT_TRUE(sid) << sid.error().message;
    // A job that advances, then fails: rolled back, so nothing may be delivered for it.
    auto failed = write_sync<bool>(*writer, [&](WriteTxn& txn) -> Result<bool> {
        if (auto r = txn.update_session_generations(*sid, 0, 5, 5); !r) return r.error();
        return errors::internal("rolled back on purpose");
    });
    ASSERT_FALSE(failed);
    // A refresh that only mints the next pair (used stays) ends no token: nothing is sent.
    auto minted = write_sync<bool>(
        *writer, [&](WriteTxn& txn) { return txn.update_session_generations(*sid, 0, 1, 0); });
    ASSERT_TRUE(minted && *minted);
    // The first use of the new pair ends the old one: that is sent.
    auto advanced = write_sync<bool>(
        *writer, [&](WriteTxn& txn) { return txn.update_session_generations(*sid, 1, 1, 1); });
    ASSERT_TRUE(advanced && *advanced);
    // A CAS that does not match changes nothing and sends nothing.
    auto missed = write_sync<bool>(
        *writer, [&](WriteTxn& txn) { return txn.update_session_generations(*sid, 0, 9, 9); });
    // (expected current 0, but it is 1 now)
    ASSERT_TRUE(missed);
    EXPECT_FALSE(*missed);
    ASSERT_TRUE(write_sync<bool>(*writer, [&](WriteTxn& txn) -> Result<bool> {
        if (auto r = txn.revoke_session(*sid, 5000, RevokeReason::kAdmin); !r) return r.error();
        // Revoking an already revoked session is a no-op: no second change.
        if (auto r = txn.revoke_session(*sid, 6000, RevokeReason::kLogout); !r) return r.error();
        return true;
    }));

    const auto changes = recorder.wait_for(2);
    // Give a stray (wrong) delivery a moment to show up before counting.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto all = recorder.wait_for(2);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].kind, SessionChange::Kind::kAdvanced);
    EXPECT_EQ(all[0].session_id, *sid);
    EXPECT_EQ(all[0].current_generation, 1);
    EXPECT_EQ(all[0].used_generation, 1);
    EXPECT_EQ(all[1].kind, SessionChange::Kind::kRevoked);
    EXPECT_EQ(all[1].session_id, *sid);
    EXPECT_EQ(all[1].reason, RevokeReason::kAdmin);
    feed->stop();
}

// The one-statement rotation NOTIFYs under the rule of kUpdateSessionGenerations: only when it
// moves used_generation (a legacy rotation, which ends the old access token), once it commits. A
// v3 rotation (used stays: it ends no token), a miss and a rolled-back job send nothing.
TEST_F(PostgresDatabaseTest, ARotationIsDeliveredByTheSessionFeedOnlyWhenItEndsTokensAndCommits) {
    auto writer = open(pgdb_->options());
    auto other = open(pgdb_->options());
    ASSERT_TRUE(writer && other);
    auto feed = other->open_session_feed();
    ASSERT_TRUE(feed);
    FeedRecorder recorder;
    ASSERT_TRUE(feed->start([&](const SessionChange& c) { recorder.on_change(c); },
                            [&] { recorder.on_gap(); }));
    auto sid = write_sync<std::int64_t>(*writer, [](WriteTxn& txn) -> Result<std::int64_t> {
        if (auto u = txn.insert_user(make_user("@n:x")); !u) return u.error();
        if (auto d = txn.ensure_device(make_device("@n:x", "D")); !d) return d.error();
        auto id = txn.insert_session(make_session("@n:x", "D"));
        if (!id) return id.error();
        RefreshTokenRecord rt;
        rt.token_hash = make_hash(1);
        rt.session_id = *id;
        if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
        return *id;
    });
    ASSERT_TRUE(sid) << sid.error().message;
    // A v3 rotation keeps used_generation (the old pair stays valid until the new one is used);
    // a legacy rotation moves it to the new generation at once and leaves no seal.
    auto rotation = [&](std::int64_t expected, std::uint8_t fill, bool legacy) {
        SessionRotation r;
        r.session_id = *sid;
        r.expected_current = expected;
        r.new_current = expected + 1;
        r.new_used = expected;
        r.access.token_hash = make_hash(fill);
        r.access.generation = expected + 1;
        r.refresh.token_hash = make_hash(static_cast<std::uint8_t>(fill + 1));
        r.refresh.generation = expected + 1;
        r.old_refresh_hash = make_hash(1);
        if (legacy) {
            r.new_used = expected + 1;
        } else {
            r.old_sealed_successor = {fill};
        }
        return r;
    };
    // A legacy rotation, rolled back by the job: nothing may be delivered.
    auto failed = write_sync<bool>(*writer, [&](WriteTxn& txn) -> Result<bool> {
        if (auto r = txn.rotate_session(rotation(0, 10, true)); !r) return r.error();
        return errors::internal("rolled back on purpose");
    });
    ASSERT_FALSE(failed);
    // A miss sends nothing.
    auto missed = write_sync<bool>(
        *writer, [&](WriteTxn& txn) { return txn.rotate_session(rotation(4, 20, true)); });
    ASSERT_TRUE(missed);
    EXPECT_FALSE(*missed);
    // A v3 rotation that commits ends no token: nothing is sent.
    auto minted = write_sync<bool>(
        *writer, [&](WriteTxn& txn) { return txn.rotate_session(rotation(0, 30, false)); });
    ASSERT_TRUE(minted) << minted.error().message;
    EXPECT_TRUE(*minted);
    // A legacy rotation that commits ends the older tokens: that is sent.
    auto rotated = write_sync<bool>(
        *writer, [&](WriteTxn& txn) { return txn.rotate_session(rotation(1, 40, true)); });
    ASSERT_TRUE(rotated) << rotated.error().message;
    EXPECT_TRUE(*rotated);

    recorder.wait_for(1);
    // Give a stray (wrong) delivery a moment to show up before counting.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto all = recorder.wait_for(1);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].kind, SessionChange::Kind::kAdvanced);
    EXPECT_EQ(all[0].session_id, *sid);
    EXPECT_EQ(all[0].current_generation, 2);
    EXPECT_EQ(all[0].used_generation, 2);
    feed->stop();
}

// A feed whose connection the server kills reconnects by itself and reports the gap, then
// delivers again.
TEST_F(PostgresDatabaseTest, TheSessionFeedReconnectsAndReportsTheGap) {
    auto writer = open(pgdb_->options());
    ASSERT_TRUE(writer);
    auto feed = writer->open_session_feed();
    ASSERT_TRUE(feed);
    FeedRecorder recorder;
    ASSERT_TRUE(feed->start([&](const SessionChange& c) { recorder.on_change(c); },
                            [&] { recorder.on_gap(); }));
    ASSERT_GE(pgdb_->terminate_connections("-feed"), 1);
    EXPECT_EQ(recorder.wait_for_gap(), 1);
    auto sid = write_sync<std::int64_t>(*writer, [](WriteTxn& txn) -> Result<std::int64_t> {
        if (auto u = txn.insert_user(make_user("@g:x")); !u) return u.error();
        if (auto d = txn.ensure_device(make_device("@g:x", "D")); !d) return d.error();
        auto id = txn.insert_session(make_session("@g:x", "D"));
        if (!id) return id.error();
        if (auto r = txn.revoke_session(*id, 5000, RevokeReason::kLogout); !r) return r.error();
        return *id;
    });
    ASSERT_TRUE(sid) << sid.error().message;
    const auto changes = recorder.wait_for(1);
    ASSERT_EQ(changes.size(), 1u);
    EXPECT_EQ(changes[0].session_id, *sid);
    feed->stop();
}

// Collects what a wake channel delivers, for tests.
class WakeRecorder {
public:
    void on_wake(const std::vector<std::string>& users) {
        std::lock_guard lock(mu_);
        ++messages_;
        users_.insert(users_.end(), users.begin(), users.end());
        cv_.notify_all();
    }
    void on_gap() {
        std::lock_guard lock(mu_);
        ++gaps_;
        cv_.notify_all();
    }
    // Waits (up to 10 s) until the users received include `user`; returns them all, in order.
    std::vector<std::string> wait_for(const std::string& user) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(10),
                     [&] { return std::find(users_.begin(), users_.end(), user) != users_.end(); });
        return users_;
    }
    int wait_for_gap() {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::seconds(10), [&] { return gaps_ > 0; });
        return gaps_;
    }
    int messages() {
        std::lock_guard lock(mu_);
        return messages_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> users_;
    int messages_ = 0;
    int gaps_ = 0;
};

TEST(PostgresWakeChannel, PayloadsStayUnderTheLimitAndParseBackInOrder) {
    std::vector<std::string> users;
    for (int i = 0; i < 1000; ++i) users.push_back("@user" + std::to_string(i) + ":example.org");
    users.push_back("");                                   // empty: cannot be carried
    users.push_back("@back\\slash:x");                     // fine
    users.push_back(std::string("@a\0b:x", 6));            // a NUL: cannot be carried
    users.push_back("@x\ny:x");                            // a newline: cannot be carried
    users.push_back("@" + std::string(8000, 'l') + ":x");  // longer than any payload
    users.push_back("@last:x");
    const auto payloads = pg::wake_payloads("0123abcd", users);
    ASSERT_GE(payloads.size(), 3u);  // ~20 000 bytes of user IDs
    std::vector<std::string> back;
    for (const auto& p : payloads) {
        EXPECT_LE(p.size(), pg::kMaxWakePayloadBytes);
        EXPECT_LT(p.size(), 8000u);  // PostgreSQL's limit
        auto message = pg::parse_wake_payload(p);
        ASSERT_TRUE(message) << p.substr(0, 40);
        EXPECT_EQ(message->instance_id, "0123abcd");
        back.insert(back.end(), message->user_ids.begin(), message->user_ids.end());
    }
    std::vector<std::string> expected(users.begin(), users.begin() + 1000);
    expected.push_back("@back\\slash:x");
    expected.push_back("@last:x");
    EXPECT_EQ(back, expected);
    // A small limit: one user a payload.
    const auto tight = pg::wake_payloads("id", {"@a:x", "@b:x"}, 10);
    EXPECT_EQ(tight, (std::vector<std::string>{"w1 id\n@a:x", "w1 id\n@b:x"}));
    EXPECT_TRUE(pg::wake_payloads("id", {"", "@x\ny:x"}).empty());
    for (const char* bad : {"", "w1", "w1 ", "w1 id", "w1 id\n", "w1 id\n@a:x\n", "w2 id\n@a:x",
                            "w1 i d\n@a:x", "w1 id\n\n@a:x", "w1 \n@a:x", "r 1 2"}) {
        EXPECT_FALSE(pg::parse_wake_payload(bad)) << bad;
    }
}

// Wake-ups published through one process's channel reach another process's channel, split into
// several notifications when long, in order; a channel never hands over its own.
TEST_F(PostgresDatabaseTest, WakeUpsReachTheOtherChannelsButNotTheirOwn) {
    auto first_db = open(pgdb_->options());
    auto second_db = open(pgdb_->options());
    ASSERT_TRUE(first_db && second_db);
    auto first = first_db->open_wake_channel();
    auto second = second_db->open_wake_channel();
    ASSERT_TRUE(first && second);
    WakeRecorder first_got, second_got;
    ASSERT_TRUE(first->start([&](const auto& users) { first_got.on_wake(users); },
                             [&] { first_got.on_gap(); }));
    ASSERT_TRUE(second->start([&](const auto& users) { second_got.on_wake(users); },
                              [&] { second_got.on_gap(); }));

    std::vector<std::string> many;
    for (int i = 0; i < 1000; ++i) many.push_back("@someone" + std::to_string(i) + ":example.org");
    auto sent = first->publish(many);
    ASSERT_TRUE(sent) << sent.error().message;
    EXPECT_GE(*sent, 3);  // ~24 000 bytes: more than two notifications
    EXPECT_EQ(second_got.wait_for(many.back()), many);
    EXPECT_EQ(second_got.messages(), *sent);

    // Notifications reach every listener in commit order: once the first channel has the
    // second's wake-up, it would have had its own earlier ones, had it not skipped them.
    ASSERT_TRUE(second->publish({"@back:x"}));
    EXPECT_EQ(first_got.wait_for("@back:x"), std::vector<std::string>{"@back:x"});
    EXPECT_EQ(first_got.messages(), 1);
    // Nothing to carry: nothing is sent.
    auto nothing = first->publish({""});
    ASSERT_TRUE(nothing);
    EXPECT_EQ(*nothing, 0);
    first->stop();
    second->stop();
}

// A channel whose connections the server kills reconnects by itself: the listener reports the
// gap and then delivers again; a publish on a killed connection fails (503) and the next one
// opens a new connection.
TEST_F(PostgresDatabaseTest, TheWakeChannelReconnectsAndReportsTheGap) {
    auto first_db = open(pgdb_->options());
    auto second_db = open(pgdb_->options());
    ASSERT_TRUE(first_db && second_db);
    auto first = first_db->open_wake_channel();
    auto second = second_db->open_wake_channel();
    WakeRecorder first_got, second_got;
    ASSERT_TRUE(first->start([&](const auto& users) { first_got.on_wake(users); },
                             [&] { first_got.on_gap(); }));
    ASSERT_TRUE(second->start([&](const auto& users) { second_got.on_wake(users); },
                              [&] { second_got.on_gap(); }));
    EXPECT_EQ(pgdb_->terminate_connections("-wake-listen"), 2);
    EXPECT_EQ(second_got.wait_for_gap(), 1);
    EXPECT_EQ(pgdb_->terminate_connections("-wake-publish"), 2);
    auto broken = first->publish({"@lost:x"});
    if (!broken) {
        EXPECT_EQ(broken.error().status, 503);
    }
    ASSERT_TRUE(first->publish({"@after:x"}));
    EXPECT_EQ(second_got.wait_for("@after:x").back(), "@after:x");
    first->stop();
    second->stop();
}

// Housekeeping prunes by age, a batch at a time, from tables that hold months of rows: the
// statements the backend runs (pg_txn.cpp, kPruneRevocationLog, kPruneSecurityEvents) must be
// able to take the oldest rows from the ts indexes of migration 4. Sequential scans are turned
// off because on these empty tables the planner would rightly prefer them.
TEST_F(PostgresDatabaseTest, PruningByAgeCanWalkTheTsIndexes) {
    ASSERT_TRUE(open(pgdb_->options()));
    auto plan = [this](const std::string& sql) {
        std::string out;
        for (const auto& line :
             pgdb_->query("SET enable_seqscan = off; EXPLAIN (COSTS OFF) " + sql)) {
            out += line + "\n";
        }
        return out;
    };
    std::string log = plan(
        "WITH deleted AS (DELETE FROM revocation_log WHERE id IN "
        "(SELECT id FROM revocation_log WHERE ts < 5 ORDER BY ts LIMIT 10) RETURNING id), "
        "marked AS (INSERT INTO revocation_log_pruned (id, through_id) "
        "SELECT 1, MAX(id) FROM deleted HAVING COUNT(*) > 0 ON CONFLICT (id) DO UPDATE "
        "SET through_id = GREATEST(revocation_log_pruned.through_id, excluded.through_id)) "
        "SELECT COUNT(*) FROM deleted");
    EXPECT_NE(log.find("Index Scan using revocation_log_by_ts on revocation_log"),
              std::string::npos)
        << log;
    EXPECT_EQ(log.find("Sort"), std::string::npos) << log;
    std::string events = plan(
        "DELETE FROM security_events WHERE id IN "
        "(SELECT id FROM security_events WHERE ts < 5 ORDER BY ts LIMIT 10)");
    EXPECT_NE(events.find("Index Scan using security_events_by_ts on security_events"),
              std::string::npos)
        << events;
    EXPECT_EQ(events.find("Sort"), std::string::npos) << events;
    // Expired UIA sessions (migration 5), by the same pattern.
    std::string uia = plan(
        "DELETE FROM uia_sessions WHERE session_id IN (SELECT session_id FROM uia_sessions "
        "WHERE created_ts < 5 ORDER BY created_ts LIMIT 10) RETURNING finished, "
        "registration_token");
    EXPECT_NE(uia.find("Index Scan using uia_sessions_by_created_ts on uia_sessions"),
              std::string::npos)
        << uia;
    EXPECT_EQ(uia.find("Sort"), std::string::npos) << uia;
}

}  // namespace
}  // namespace myelin::storage
