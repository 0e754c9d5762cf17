// The revocation listener against a real SQLite file opened twice (a "server" handle with its
// token cache, and a second handle standing in for the admin CLI process): revocations written
// through the other handle reach the server's cache only through the log, entries from before
// prime() are not replayed, the polling thread delivers them within a second, and a listener that
// fell behind entries housekeeping pruned re-applies every revoked session instead.

#include "myelin/service/revocation_listener.hpp"

#include <chrono>
#include <limits>
#include <string>
#include <thread>
#include <variant>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "myelin/core/metrics.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "service_test_env.hpp"

namespace myelin::service {
namespace {

using test_support::ScratchDir;
using test_support::TokenKeys;
constexpr std::int64_t kStart = 1'700'000'000'000;
const std::string kUser = "@alice:localhost";

class RevocationListenerTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto server_db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(server_db) << server_db.error().message;
        server_db_ = std::move(*server_db);
        auto cli_db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(cli_db) << cli_db.error().message;
        cli_db_ = std::move(*cli_db);
        server_ = std::make_unique<SessionService>(*server_db_, keys_.hasher, keys_.sealer,
                                                   server_cache_, clock_, config_);
        cli_ = std::make_unique<SessionService>(*cli_db_, keys_.hasher, keys_.sealer, cli_cache_,
                                                clock_, config_);
    }

    void TearDown() override {
        listener_.reset();
        server_.reset();
        cli_.reset();
        server_db_->close();
        cli_db_->close();
    }

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        boost::asio::io_context io;
        auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
        io.run();
        return future.get();
    }

    // Signs in on the server side; the token is in the server's cache afterwards.
    IssuedTokens sign_in(const std::string& device) {
        auto created = storage::write_sync<NewSession>(*server_db_, [&](storage::WriteTxn& txn) {
            storage::UserRecord user{kUser, "", false, false, false, kStart};
            (void)txn.insert_user(user);
            storage::DeviceRecord d;
            d.user_id = kUser;
            d.device_id = device;
            (void)txn.ensure_device(d);
            return server_->create_session(txn, kUser, device, false, false);
        });
        EXPECT_TRUE(created) << created.error().message;
        server_->publish_session(*created);
        return created->tokens;
    }

    // The server's cached view of the token: live, revoked, or gone from the cache.
    enum class Cached { kLive, kRevoked, kAbsent };
    Cached cached(const IssuedTokens& t) {
        auto found = server_cache_.find(keys_.hasher.hash(t.access_token));
        if (!found) return Cached::kAbsent;
        return found->session->revoked() ? Cached::kRevoked : Cached::kLive;
    }

    // Prunes the log through the other handle, as housekeeping does: entries with ts < before.
    std::int64_t prune_log(std::int64_t before) {
        auto pruned = storage::write_sync<std::int64_t>(*cli_db_, [before](storage::WriteTxn& txn) {
            return txn.prune_revocation_log(before, 100);
        });
        EXPECT_TRUE(pruned) << pruned.error().message;
        return pruned ? *pruned : -1;
    }

    // Revokes through the other handle, as the admin CLI does.
    void revoke_elsewhere(const std::string& device) {
        auto ended = run(
            cli_->end_sessions(kUser, device, std::nullopt, storage::RevokeReason::kAdmin, false));
        ASSERT_TRUE(ended) << ended.error().message;
        ASSERT_EQ(*ended, 1u);
    }

    ScratchDir dir_{"myelin-revocation-test"};
    TokenKeys keys_;
    ManualClock clock_{kStart};
    TokensConfig config_;
    std::unique_ptr<storage::Database> server_db_;
    std::unique_ptr<storage::Database> cli_db_;
    auth::TokenCache server_cache_;
    auth::TokenCache cli_cache_;
    std::unique_ptr<SessionService> server_;
    std::unique_ptr<SessionService> cli_;
    std::unique_ptr<RevocationListener> listener_;
};

TEST_F(RevocationListenerTest, PollAppliesRevocationsMadeThroughAnotherHandle) {
    auto gone = sign_in("GONE");
    auto kept = sign_in("KEPT");
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    auto& applied = metrics::counter("myelin_revocation_log_applied_total", "");
    auto& admin_revocations =
        metrics::counter("myelin_session_revocations_total", "", {{"reason", "admin"}});

    revoke_elsewhere("GONE");
    // The server's cache cannot know yet: this is what the listener is for.
    EXPECT_EQ(cached(gone), Cached::kLive);
    const auto applied_before = applied.value();
    const auto admin_before = admin_revocations.value();

    auto n = listener_->poll_once();
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ(cached(gone), Cached::kAbsent);
    EXPECT_EQ(cached(kept), Cached::kLive);
    auto verdict = server_->authenticate_now(gone.access_token, false);
    EXPECT_FALSE(std::holds_alternative<Identity>(verdict));
    EXPECT_EQ(applied.value(), applied_before + 1);
    // Applying a logged revocation is not a new revocation.
    EXPECT_EQ(admin_revocations.value(), admin_before);

    // Nothing new: nothing applied, the position stays.
    const auto last = listener_->last_id();
    n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(listener_->last_id(), last);
}

TEST_F(RevocationListenerTest, PrimeStartsAfterTheNewestEntry) {
    auto first = sign_in("FIRST");
    revoke_elsewhere("FIRST");
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    EXPECT_GT(listener_->last_id(), 0);
    auto n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 0u);  // already reflected in storage: not replayed
}

TEST_F(RevocationListenerTest, RevocationsByThisProcessComeBackHarmlessly) {
    auto t = sign_in("SELF");
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    auto ended = run(server_->end_sessions(kUser, std::string("SELF"), std::nullopt,
                                           storage::RevokeReason::kLogout, false));
    ASSERT_TRUE(ended);
    EXPECT_EQ(cached(t), Cached::kAbsent);
    auto n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ(cached(t), Cached::kAbsent);
}

TEST_F(RevocationListenerTest, ThreadDeliversWithinASecond) {
    auto t = sign_in("POLLED");
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_,
                                                     std::chrono::milliseconds(50));
    ASSERT_TRUE(listener_->prime());
    listener_->start();
    revoke_elsewhere("POLLED");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (cached(t) == Cached::kLive && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_NE(cached(t), Cached::kLive);
    listener_->stop();
    listener_->stop();  // idempotent
}

TEST_F(RevocationListenerTest, ManyEntriesArePagedThrough) {
    // More than one batch (1000) of log entries, written in one job to keep the test quick.
    constexpr std::size_t kSessions = 1203;
    auto created = storage::write_sync<std::vector<NewSession>>(
        *server_db_, [&](storage::WriteTxn& txn) -> Result<std::vector<NewSession>> {
            storage::UserRecord user{kUser, "", false, false, false, kStart};
            (void)txn.insert_user(user);
            std::vector<NewSession> out;
            for (std::size_t i = 0; i < kSessions; ++i) {
                storage::DeviceRecord d;
                d.user_id = kUser;
                d.device_id = "D" + std::to_string(i);
                (void)txn.ensure_device(d);
                auto s = server_->create_session(txn, kUser, d.device_id, false, false);
                if (!s) return s.error();
                out.push_back(std::move(*s));
            }
            return out;
        });
    ASSERT_TRUE(created) << created.error().message;
    std::vector<IssuedTokens> tokens;
    for (const auto& s : *created) {
        server_->publish_session(s);
        tokens.push_back(s.tokens);
    }
    ASSERT_EQ(server_cache_.token_count(), kSessions);
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    auto ended = run(cli_->end_sessions(kUser, std::nullopt, std::nullopt,
                                        storage::RevokeReason::kAdmin, false));
    ASSERT_TRUE(ended);
    ASSERT_EQ(*ended, tokens.size());
    auto n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, tokens.size());
    EXPECT_EQ(server_cache_.token_count(), 0u);
}

// Housekeeping pruned entries this listener never applied (it was stalled past the retention):
// it cannot know which sessions they named, so it re-applies every revoked session instead.
TEST_F(RevocationListenerTest, FallingBehindPrunedEntriesResyncsFromTheSessions) {
    auto seen = sign_in("SEEN");
    auto missed = sign_in("MISSED");
    auto also_missed = sign_in("ALSO");
    auto kept = sign_in("KEPT");
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    revoke_elsewhere("SEEN");
    ASSERT_TRUE(listener_->poll_once());
    EXPECT_EQ(cached(seen), Cached::kAbsent);

    revoke_elsewhere("MISSED");
    revoke_elsewhere("ALSO");
    ASSERT_EQ(prune_log(std::numeric_limits<std::int64_t>::max()), 3);  // the log is empty now
    auto& resyncs = metrics::counter("myelin_revocation_log_resyncs_total", "");
    const auto resyncs_before = resyncs.value();

    auto n = listener_->poll_once();
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_EQ(*n, 3u);  // every revoked session, the one already applied included
    EXPECT_NE(cached(missed), Cached::kLive);
    EXPECT_NE(cached(also_missed), Cached::kLive);
    EXPECT_EQ(cached(kept), Cached::kLive);
    EXPECT_FALSE(
        std::holds_alternative<Identity>(server_->authenticate_now(missed.access_token, false)));
    EXPECT_EQ(resyncs.value(), resyncs_before + 1);

    // Back in step: the position is the newest id ever written, so nothing is missed and no
    // second resync happens; a later revocation arrives through the log again.
    n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(resyncs.value(), resyncs_before + 1);
    revoke_elsewhere("KEPT");
    n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ(cached(kept), Cached::kAbsent);
    EXPECT_EQ(resyncs.value(), resyncs_before + 1);
}

// Pruning what the listener has already applied is no reason to resync, and neither is a hole
// in the ids that pruning did not make (a backend's sequence may skip values).
TEST_F(RevocationListenerTest, PrunedEntriesAlreadyAppliedAndIdGapsCauseNoResync) {
    sign_in("OLD");
    auto first = sign_in("FIRST");
    auto second = sign_in("SECOND");
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    revoke_elsewhere("OLD");
    ASSERT_TRUE(listener_->poll_once());
    const std::int64_t position = listener_->last_id();
    clock_.advance_ms(1000);
    revoke_elsewhere("FIRST");
    revoke_elsewhere("SECOND");
    // Prune only the entry already applied (the older timestamp).
    ASSERT_EQ(prune_log(kStart + 500), 1);
    // A hole right after the position, not made by pruning: the FIRST entry disappears.
    {
        sqlite3* raw = nullptr;
        ASSERT_EQ(sqlite3_open((dir_.path() / "hs.db").string().c_str(), &raw), SQLITE_OK);
        const std::string sql =
            "DELETE FROM revocation_log WHERE id = " + std::to_string(position + 1);
        EXPECT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
        sqlite3_close(raw);
    }
    auto& resyncs = metrics::counter("myelin_revocation_log_resyncs_total", "");
    const auto resyncs_before = resyncs.value();
    auto n = listener_->poll_once();
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_EQ(*n, 1u);  // SECOND, from the log
    EXPECT_EQ(cached(second), Cached::kAbsent);
    EXPECT_EQ(cached(first), Cached::kLive);  // its entry is gone and nothing says it was pruned
    EXPECT_EQ(resyncs.value(), resyncs_before);
}

// A listener primed on a log that housekeeping has emptied starts after the pruned entries
// (they are reflected in the storage its cache was warmed from), not before them.
TEST_F(RevocationListenerTest, PrimingOnAPrunedLogDoesNotResync) {
    sign_in("GONE");
    revoke_elsewhere("GONE");
    ASSERT_EQ(prune_log(std::numeric_limits<std::int64_t>::max()), 1);
    listener_ = std::make_unique<RevocationListener>(*server_db_, server_cache_);
    ASSERT_TRUE(listener_->prime());
    EXPECT_EQ(listener_->last_id(), 1);
    auto& resyncs = metrics::counter("myelin_revocation_log_resyncs_total", "");
    const auto resyncs_before = resyncs.value();
    auto n = listener_->poll_once();
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(resyncs.value(), resyncs_before);
}

}  // namespace
}  // namespace myelin::service
