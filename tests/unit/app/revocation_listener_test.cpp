// The revocation listener against a real SQLite file opened twice (a "server" handle with its
// token cache, and a second handle standing in for the admin CLI process): revocations written
// through the other handle reach the server's cache only through the log, entries from before
// prime() are not replayed, and the polling thread delivers them within a second.

#include "myelin/service/revocation_listener.hpp"

#include <chrono>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace myelin::service
