// The SQLite backend's threads: group commit, per-job rollback inside a shared commit, jobs that
// throw inside one, commit failures and recovery, the non-durable mode. The contract every
// backend keeps is tested in database_test.cpp.

#include "myelin/storage/sqlite/sqlite_database.hpp"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "myelin/storage/await.hpp"

#include "faulty_vfs.hpp"
#include "storage_test_support.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_user;
using testing::post_insert;
using testing::TempDir;
using testing::user_exists;

// Records the size of every commit the writer reports.
struct CommitLog {
    std::mutex mu;
    std::vector<std::size_t> batches;  // guarded by mu

    SqliteOptions options() {
        SqliteOptions o;
        o.on_commit = [this](std::size_t jobs) {
            std::lock_guard lock(mu);
            batches.push_back(jobs);
        };
        return o;
    }
    std::vector<std::size_t> snapshot() {
        std::lock_guard lock(mu);
        return batches;
    }
};

std::unique_ptr<Database> open_or_fail(const std::string& path, const SqliteOptions& options) {
    auto db = open_sqlite(path, options);
    EXPECT_TRUE(db) << (db ? "" : db.error().message);
    return db ? std::move(*db) : nullptr;
}

// Holds the writer inside a job until release() is called, so that the jobs posted meanwhile
// queue up and are taken as one batch.
class WriterGate {
public:
    explicit WriterGate(Database& db) {
        WriteJob job;
        job.run = [this](WriteTxn&) -> Result<void> {
            entered_.set_value();
            released_.get_future().wait();
            return {};
        };
        job.on_committed = [](const Result<void>&) {};
        db.post_write(std::move(job));
        entered_.get_future().wait();
    }
    void release() { released_.set_value(); }

private:
    std::promise<void> entered_;
    std::promise<void> released_;
};

TEST(SqliteDatabase, ANewDatabaseAndItsWalAreReadableByTheOwnerOnly) {
    TempDir dir;
    const mode_t old_umask = ::umask(022);  // the usual umask: SQLite alone would make 0644
    CommitLog commits;
    auto db = open_or_fail(dir.file("myelin.db"), commits.options());
    ::umask(old_umask);
    ASSERT_TRUE(db);
    auto written = write_sync<bool>(
        *db, [](WriteTxn& txn) -> Result<bool> { return txn.insert_user(make_user("@perm:x")); });
    ASSERT_TRUE(written);
    for (const char* name : {"myelin.db", "myelin.db-wal"}) {
        struct stat st {};
        ASSERT_EQ(::stat(dir.file(name).c_str(), &st), 0) << name;
        EXPECT_EQ(st.st_mode & 0777, 0600U) << name;
    }
    db->close();
}

TEST(SqliteDatabase, OnCommitCountsEveryJobOnce) {
    TempDir dir;
    CommitLog commits;
    auto db = open_or_fail(dir.file("myelin.db"), commits.options());
    ASSERT_TRUE(db);
    std::latch done(20);
    std::vector<Result<void>> results(20);
    for (int i = 0; i < 20; ++i) {
        post_insert(*db, "@o" + std::to_string(i) + ":x", std::nullopt, false, &results[i], done);
    }
    done.wait();
    std::size_t total = 0;
    for (auto b : commits.snapshot()) total += b;
    EXPECT_EQ(total, 20u);
}

TEST(SqliteDatabase, JobsQueuedTogetherShareOneCommit) {
    TempDir dir;
    CommitLog commits;
    auto db = open_or_fail(dir.file("myelin.db"), commits.options());
    ASSERT_TRUE(db);

    WriterGate gate(*db);
    std::latch done(10);
    std::vector<Result<void>> results(10);
    for (int i = 0; i < 10; ++i) {
        post_insert(*db, "@g" + std::to_string(i) + ":x", std::nullopt, false, &results[i], done);
    }
    gate.release();
    done.wait();
    for (const auto& r : results) EXPECT_TRUE(r);
    // The gate's commit, then the ten queued jobs in one.
    EXPECT_EQ(commits.snapshot(), (std::vector<std::size_t>{1, 10}));
}

TEST(SqliteDatabase, MaxBatchBoundsAGroup) {
    TempDir dir;
    CommitLog commits;
    SqliteOptions options = commits.options();
    options.max_batch = 4;
    auto db = open_or_fail(dir.file("myelin.db"), options);
    ASSERT_TRUE(db);

    WriterGate gate(*db);
    std::latch done(10);
    std::vector<Result<void>> results(10);
    for (int i = 0; i < 10; ++i) {
        post_insert(*db, "@m" + std::to_string(i) + ":x", std::nullopt, false, &results[i], done);
    }
    gate.release();
    done.wait();
    EXPECT_EQ(commits.snapshot(), (std::vector<std::size_t>{1, 4, 4, 2}));
}

TEST(SqliteDatabase, AFailingJobRollsBackOnlyItsOwnChanges) {
    TempDir dir;
    CommitLog commits;
    auto db = open_or_fail(dir.file("myelin.db"), commits.options());
    ASSERT_TRUE(db);

    WriterGate gate(*db);
    std::latch done(5);
    std::vector<Result<void>> results(5);
    for (int i = 0; i < 5; ++i) {
        std::optional<Error> outcome;
        if (i == 2) outcome = errors::forbidden("job 2 says no");
        post_insert(*db, "@e" + std::to_string(i) + ":x", outcome, false, &results[i], done);
    }
    gate.release();
    done.wait();

    for (int i = 0; i < 5; ++i) {
        if (i == 2) {
            ASSERT_FALSE(results[i]);
            EXPECT_EQ(results[i].error().errcode, "M_FORBIDDEN");
            EXPECT_EQ(results[i].error().message, "job 2 says no");
        } else {
            EXPECT_TRUE(results[i]) << i;
        }
        EXPECT_EQ(user_exists(*db, "@e" + std::to_string(i) + ":x"), i != 2) << i;
    }
    auto devices = read_sync<std::optional<DeviceRecord>>(
        *db, [](ReadTxn& txn) { return txn.find_device("@e2:x", "D"); });
    ASSERT_TRUE(devices);
    EXPECT_FALSE(devices->has_value());
    // The four good jobs still shared one commit.
    EXPECT_EQ(commits.snapshot(), (std::vector<std::size_t>{1, 4}));
}

TEST(SqliteDatabase, AThrowingJobFailsAloneAndTheWriterSurvives) {
    TempDir dir;
    CommitLog commits;
    auto db = open_or_fail(dir.file("myelin.db"), commits.options());
    ASSERT_TRUE(db);

    WriterGate gate(*db);
    std::latch done(3);
    std::vector<Result<void>> results(3);
    post_insert(*db, "@t0:x", std::nullopt, false, &results[0], done);
    post_insert(*db, "@t1:x", std::nullopt, true, &results[1], done);
    post_insert(*db, "@t2:x", std::nullopt, false, &results[2], done);
    gate.release();
    done.wait();

    EXPECT_TRUE(results[0]);
    ASSERT_FALSE(results[1]);
    EXPECT_EQ(results[1].error().status, 500);
    EXPECT_TRUE(results[2]);
    EXPECT_TRUE(user_exists(*db, "@t0:x"));
    EXPECT_FALSE(user_exists(*db, "@t1:x"));
    EXPECT_TRUE(user_exists(*db, "@t2:x"));

    // Still serving.
    auto later =
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@t3:x")); });
    ASSERT_TRUE(later);
    EXPECT_TRUE(*later);
}

TEST(SqliteDatabase, AFailedCommitFailsItsJobsAndTheNextBatchSucceeds) {
    TempDir dir;
    SqliteOptions options;
    options.vfs = testing::faulty_vfs_name();
    auto db = open_or_fail(dir.file("myelin.db"), options);
    ASSERT_TRUE(db);
    ASSERT_TRUE(write_sync<bool>(
        *db, [](WriteTxn& txn) { return txn.insert_user(make_user("@before:x")); }));

    testing::set_wal_writes_fail(true);
    auto failed = write_sync<bool>(
        *db, [](WriteTxn& txn) { return txn.insert_user(make_user("@during:x")); });
    testing::set_wal_writes_fail(false);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().status, 503);
    EXPECT_EQ(failed.error().errcode, "M_UNKNOWN");
    EXPECT_EQ(failed.error().retry_after_s, 5);
    EXPECT_NE(failed.error().message.find("disk is full"), std::string::npos)
        << failed.error().message;

    // Nothing of the failed batch is visible, and the writer recovers without a restart.
    EXPECT_FALSE(user_exists(*db, "@during:x"));
    auto retried = write_sync<bool>(
        *db, [](WriteTxn& txn) { return txn.insert_user(make_user("@during:x")); });
    ASSERT_TRUE(retried) << retried.error().message;
    EXPECT_TRUE(*retried);
    EXPECT_TRUE(user_exists(*db, "@during:x"));
    EXPECT_TRUE(user_exists(*db, "@before:x"));
}

// Another process (here: another connection) holds the write lock. The writer's BEGIN waits for
// the busy timeout and fails with 503; the jobs that queued while it waited get that answer at
// once instead of a batch of their own and a second wait. The lock is released when the first
// failure is delivered: a job that waited for a BEGIN of its own would then succeed.
TEST(SqliteDatabase, JobsQueuedBehindABeginThatFindsTheDatabaseLockedFailWithIt) {
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    SqliteOptions options;
    options.busy_timeout = std::chrono::milliseconds(1500);
    auto db = open_or_fail(path, options);
    ASSERT_TRUE(db);

    sqlite3* holder = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &holder), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(holder, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);

    std::latch done(3);
    Result<void> first;
    WriteJob job;
    job.run = [](WriteTxn& txn) -> Result<void> {
        auto inserted = txn.insert_user(make_user("@first:x"));
        if (!inserted) return inserted.error();
        return {};
    };
    job.on_committed = [&](const Result<void>& r) {
        first = r;
        sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);  // on the writer thread
        done.count_down();
    };
    db->post_write(std::move(job));
    // Give the writer time to take the first job and start waiting for the lock; had it not
    // yet, the next two would join its batch and the test would pass without showing anything.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Result<void> second;
    Result<void> third;
    post_insert(*db, "@second:x", std::nullopt, false, &second, done);
    post_insert(*db, "@third:x", std::nullopt, false, &third, done);
    done.wait();
    sqlite3_close(holder);

    for (const Result<void>* r : {&first, &second, &third}) {
        ASSERT_FALSE(*r);
        EXPECT_EQ(r->error().status, 503);
        EXPECT_EQ(r->error().retry_after_s, 5);
        EXPECT_NE(r->error().message.find("locked by another connection or process"),
                  std::string::npos)
            << r->error().message;
    }
    // The lock is gone: the next job commits.
    auto later =
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@later:x")); });
    ASSERT_TRUE(later) << later.error().message;
    EXPECT_TRUE(user_exists(*db, "@later:x"));
    EXPECT_FALSE(user_exists(*db, "@second:x"));
}

TEST(SqliteDatabase, NonDurableModeWorks) {
    TempDir dir;
    SqliteOptions options;
    options.durable = false;
    options.reader_threads = 1;
    auto db = open_or_fail(dir.file("myelin.db"), options);
    ASSERT_TRUE(db);
    ASSERT_TRUE(
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@n:x")); }));
    EXPECT_TRUE(user_exists(*db, "@n:x"));
}

}  // namespace
}  // namespace myelin::storage
