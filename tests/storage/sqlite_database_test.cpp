// The SQLite backend's threads: group commit, per-job rollback inside a shared commit, jobs that
// throw, commit failures and recovery, close(), durability across reopen, and the awaitable
// forms of await.hpp.

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

#include "myelin/storage/await.hpp"

#include "faulty_vfs.hpp"
#include "storage_test_support.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_user;
using testing::TempDir;

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

bool user_exists(Database& db, const std::string& user_id) {
    auto found = read_sync<std::optional<UserRecord>>(
        db, [&](ReadTxn& txn) { return txn.find_user(user_id); });
    EXPECT_TRUE(found);
    return found && found->has_value();
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

// Posts a job that inserts `user_id` and returns `outcome` (or throws when `throw_it`); its
// result goes into `*result` and `done` is counted down.
void post_insert(Database& db, const std::string& user_id, std::optional<Error> outcome,
                 bool throw_it, Result<void>* result, std::latch& done) {
    WriteJob job;
    job.run = [user_id, outcome, throw_it](WriteTxn& txn) -> Result<void> {
        if (auto u = txn.insert_user(make_user(user_id)); !u) return u.error();
        if (auto d = txn.ensure_device(make_device(user_id, "D")); !d) return d.error();
        if (throw_it) throw std::runtime_error("job failure for the test");
        if (outcome) return *outcome;
        return {};
    };
    job.on_committed = [result, &done](const Result<void>& r) {
        *result = r;
        done.count_down();
    };
    db.post_write(std::move(job));
}

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

TEST(SqliteDatabase, ConcurrentWritesAreAllCommittedAndDelivered) {
    TempDir dir;
    CommitLog commits;
    auto db = open_or_fail(dir.file("myelin.db"), commits.options());
    ASSERT_TRUE(db);

    constexpr int kThreads = 4;
    constexpr int kPerThread = 50;
    std::latch done(kThreads * kPerThread);
    std::atomic<int> ok{0};
    std::atomic<int> on_writer_thread{0};
    std::vector<std::thread> posters;
    for (int t = 0; t < kThreads; ++t) {
        posters.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                const std::string user_id =
                    "@u" + std::to_string(t) + "_" + std::to_string(i) + ":x";
                WriteJob job;
                job.run = [user_id](WriteTxn& txn) -> Result<void> {
                    auto inserted = txn.insert_user(make_user(user_id));
                    if (!inserted) return inserted.error();
                    if (!*inserted) return errors::internal("duplicate");
                    return {};
                };
                job.on_committed = [&, caller = std::this_thread::get_id()](const Result<void>& r) {
                    if (r) ok.fetch_add(1);
                    if (std::this_thread::get_id() != caller) on_writer_thread.fetch_add(1);
                    done.count_down();
                };
                db->post_write(std::move(job));
            }
        });
    }
    for (auto& p : posters) p.join();
    done.wait();

    EXPECT_EQ(ok.load(), kThreads * kPerThread);
    EXPECT_EQ(on_writer_thread.load(), kThreads * kPerThread);
    for (int t = 0; t < kThreads; ++t) {
        EXPECT_TRUE(user_exists(*db, "@u" + std::to_string(t) + "_0:x"));
        EXPECT_TRUE(user_exists(*db, "@u" + std::to_string(t) + "_49:x"));
    }
    const auto batches = commits.snapshot();
    std::size_t total = 0;
    std::size_t largest = 0;
    for (auto b : batches) {
        total += b;
        largest = std::max(largest, b);
    }
    EXPECT_EQ(total, static_cast<std::size_t>(kThreads * kPerThread));
    std::cout << "[ info     ] " << total << " jobs in " << batches.size()
              << " commits, largest batch " << largest << "\n";
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

TEST(SqliteDatabase, AReadSeesCommittedData) {
    TempDir dir;
    auto db = open_or_fail(dir.file("myelin.db"), {});
    ASSERT_TRUE(db);
    EXPECT_FALSE(user_exists(*db, "@r:x"));
    ASSERT_TRUE(
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@r:x")); }));
    EXPECT_TRUE(user_exists(*db, "@r:x"));
}

TEST(SqliteDatabase, AReadJobThatThrowsDoesNotStopTheReaders) {
    TempDir dir;
    SqliteOptions options;
    options.reader_threads = 1;
    auto db = open_or_fail(dir.file("myelin.db"), options);
    ASSERT_TRUE(db);
    db->post_read([](ReadTxn*) { throw std::runtime_error("read job failure for the test"); });
    EXPECT_FALSE(user_exists(*db, "@nobody:x"));
}

TEST(SqliteDatabase, CloseFinishesQueuedJobsThenRefusesNewOnes) {
    TempDir dir;
    auto db = open_or_fail(dir.file("myelin.db"), {});
    ASSERT_TRUE(db);

    constexpr int kJobs = 50;
    std::atomic<int> committed{0};
    std::atomic<int> reads_with_txn{0};
    for (int i = 0; i < kJobs; ++i) {
        WriteJob job;
        job.run = [i](WriteTxn& txn) -> Result<void> {
            auto r = txn.insert_user(make_user("@c" + std::to_string(i) + ":x"));
            if (!r) return r.error();
            return {};
        };
        job.on_committed = [&](const Result<void>& r) {
            if (r) committed.fetch_add(1);
        };
        db->post_write(std::move(job));
        db->post_read([&](ReadTxn* txn) {
            if (txn != nullptr) reads_with_txn.fetch_add(1);
        });
    }
    db->close();
    EXPECT_EQ(committed.load(), kJobs);
    EXPECT_EQ(reads_with_txn.load(), kJobs);
    db->close();  // idempotent

    bool ran = false;
    std::optional<Result<void>> after;
    WriteJob job;
    job.run = [&](WriteTxn&) -> Result<void> {
        ran = true;
        return {};
    };
    job.on_committed = [&](const Result<void>& r) { after = r; };
    db->post_write(std::move(job));
    EXPECT_FALSE(ran);
    ASSERT_TRUE(after.has_value());
    EXPECT_FALSE(*after);
    EXPECT_EQ(after->error().status, 503);

    bool read_called = false;
    db->post_read([&](ReadTxn* txn) {
        read_called = true;
        EXPECT_EQ(txn, nullptr);
    });
    EXPECT_TRUE(read_called);

    EXPECT_FALSE(read_sync<std::optional<UserRecord>>(
        *db, [](ReadTxn& txn) { return txn.find_user("@c0:x"); }));
    EXPECT_FALSE(
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@late:x")); }));
}

TEST(SqliteDatabase, CommittedDataSurvivesCloseAndReopen) {
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    std::int64_t session_id = 0;
    {
        auto db = open_or_fail(path, {});
        ASSERT_TRUE(db);
        auto sid = write_sync<std::int64_t>(*db, [](WriteTxn& txn) -> Result<std::int64_t> {
            if (auto u = txn.insert_user(make_user("@d:x")); !u) return u.error();
            return txn.insert_session(testing::make_session("@d:x", "D"));
        });
        ASSERT_TRUE(sid);
        session_id = *sid;
        ASSERT_TRUE(write_sync<void>(*db, [&](WriteTxn& txn) {
            AccessTokenRecord token;
            token.token_hash = testing::make_hash(42);
            token.session_id = session_id;
            return txn.insert_access_token(token);
        }));
    }
    auto db = open_or_fail(path, {});
    ASSERT_TRUE(db);
    EXPECT_TRUE(user_exists(*db, "@d:x"));
    auto token = read_sync<std::optional<AccessTokenLookup>>(
        *db, [](ReadTxn& txn) { return txn.find_access_token(testing::make_hash(42)); });
    ASSERT_TRUE(token);
    ASSERT_TRUE(token->has_value());
    EXPECT_EQ((*token)->session.session_id, session_id);
}

TEST(SqliteDatabase, AwaitableReadAndWriteFromACoroutine) {
    TempDir dir;
    // Declared before the database so that it outlives it: the writer thread posts completions
    // into it, so the database must be closed (its threads joined) before it is destroyed.
    boost::asio::io_context io;
    auto db = open_or_fail(dir.file("myelin.db"), {});
    ASSERT_TRUE(db);

    auto work = boost::asio::make_work_guard(io);
    std::optional<Result<bool>> written;
    std::optional<Result<std::optional<UserRecord>>> found;
    std::optional<Result<bool>> refused;
    std::thread::id resumed_on;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
            written = co_await write<bool>(
                *db, [](WriteTxn& txn) { return txn.insert_user(make_user("@co:x")); });
            found = co_await read<std::optional<UserRecord>>(
                *db, [](ReadTxn& txn) { return txn.find_user("@co:x"); });
            refused = co_await write<bool>(*db, [](WriteTxn& txn) -> Result<bool> {
                if (auto u = txn.insert_user(make_user("@co2:x")); !u) return u.error();
                return errors::forbidden("no");
            });
            resumed_on = std::this_thread::get_id();
            work.reset();
        },
        boost::asio::detached);
    io.run();

    ASSERT_TRUE(written.has_value() && *written);
    EXPECT_TRUE(**written);
    ASSERT_TRUE(found.has_value() && *found);
    ASSERT_TRUE((*found)->has_value());
    EXPECT_EQ((**found)->user_id, "@co:x");
    ASSERT_TRUE(refused.has_value());
    ASSERT_FALSE(*refused);
    EXPECT_EQ(refused->error().errcode, "M_FORBIDDEN");
    EXPECT_FALSE(user_exists(*db, "@co2:x"));
    EXPECT_EQ(resumed_on, std::this_thread::get_id());  // resumed on the io_context's thread
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
