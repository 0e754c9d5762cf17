// The Database contract on every backend: concurrent writes, rollback of a failing or throwing
// job, reads of committed data, close(), durability across reopen, and the awaitable forms of
// await.hpp. Backend-specific threading (SQLite's group commit, PostgreSQL's pool) is tested in
// sqlite_database_test.cpp and pg_database_test.cpp.

#include <atomic>
#include <latch>
#include <optional>
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

#include "storage_test_support.hpp"
#include "test_database.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_user;
using testing::post_insert;
using testing::user_exists;

class DatabaseTest : public testing::BackendTest {};

TEST_P(DatabaseTest, AFailingOrThrowingJobRollsBackOnlyItsOwnChanges) {
    std::latch done(5);
    std::vector<Result<void>> results(5);
    for (int i = 0; i < 5; ++i) {
        std::optional<Error> outcome;
        if (i == 1) outcome = errors::forbidden("job 1 says no");
        post_insert(*db_, "@e" + std::to_string(i) + ":x", outcome, i == 3, &results[i], done);
    }
    done.wait();
    for (int i = 0; i < 5; ++i) {
        if (i == 1) {
            ASSERT_FALSE(results[i]);
            EXPECT_EQ(results[i].error().errcode, "M_FORBIDDEN");
            EXPECT_EQ(results[i].error().message, "job 1 says no");
        } else if (i == 3) {
            ASSERT_FALSE(results[i]);
            EXPECT_EQ(results[i].error().status, 500);
        } else {
            EXPECT_TRUE(results[i]) << i;
        }
        EXPECT_EQ(user_exists(*db_, "@e" + std::to_string(i) + ":x"), i != 1 && i != 3) << i;
    }
    for (const char* user : {"@e1:x", "@e3:x"}) {
        auto device = read_sync<std::optional<DeviceRecord>>(
            *db_, [&](ReadTxn& txn) { return txn.find_device(user, "D"); });
        ASSERT_TRUE(device);
        EXPECT_FALSE(device->has_value()) << user;
    }
    // Still serving.
    auto later =
        write_sync<bool>(*db_, [](WriteTxn& txn) { return txn.insert_user(make_user("@e5:x")); });
    ASSERT_TRUE(later);
    EXPECT_TRUE(*later);
}

TEST_P(DatabaseTest, ConcurrentWritesAreAllCommittedAndDeliveredOnTheBackendsThreads) {
    Database* db = db_.get();

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
}

TEST_P(DatabaseTest, AReadSeesCommittedData) {
    Database* db = db_.get();
    EXPECT_FALSE(user_exists(*db, "@r:x"));
    ASSERT_TRUE(
        write_sync<bool>(*db, [](WriteTxn& txn) { return txn.insert_user(make_user("@r:x")); }));
    EXPECT_TRUE(user_exists(*db, "@r:x"));
}

TEST_P(DatabaseTest, AReadJobThatThrowsDoesNotStopTheReaders) {
    for (int i = 0; i < 8; ++i) {
        db_->post_read([](ReadTxn*) { throw std::runtime_error("read job failure for the test"); });
    }
    EXPECT_FALSE(user_exists(*db_, "@nobody:x"));
}

TEST_P(DatabaseTest, CloseFinishesQueuedJobsThenRefusesNewOnes) {
    Database* db = db_.get();

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

TEST_P(DatabaseTest, CommittedDataSurvivesCloseAndReopen) {
    std::int64_t session_id = 0;
    {
        auto& db = db_;
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
        db->close();
    }
    auto reopened = testdb_->open();
    ASSERT_TRUE(reopened) << reopened.error().message;
    auto& db = *reopened;
    EXPECT_TRUE(user_exists(*db, "@d:x"));
    auto token = read_sync<std::optional<AccessTokenLookup>>(
        *db, [](ReadTxn& txn) { return txn.find_access_token(testing::make_hash(42)); });
    ASSERT_TRUE(token);
    ASSERT_TRUE(token->has_value());
    EXPECT_EQ((*token)->session.session_id, session_id);
}

TEST_P(DatabaseTest, AwaitableReadAndWriteFromACoroutine) {
    // The backend's threads post completions into the io_context, so the database is closed
    // (its threads joined) before the io_context is destroyed.
    boost::asio::io_context io;
    Database* db = db_.get();

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
    db_->close();
}

MYELIN_INSTANTIATE_ON_BACKENDS(DatabaseTest);

}  // namespace
}  // namespace myelin::storage
