// The token engine against a real SQLite database and a manual clock: rotation, idempotent
// retries, first-use, reuse detection, expiry, logout, and secrets never stored.

#include "myelin/service/session_service.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include "myelin/auth/token_format.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "retrying_database.hpp"
#include "service_test_env.hpp"

namespace myelin::service {
namespace {

namespace fs = std::filesystem;
using test_support::ScratchDir;
using test_support::TokenKeys;
constexpr std::int64_t kStart = 1'700'000'000'000;

class SessionServiceTest : public ::testing::Test {
protected:
    void SetUp() override { open(); }

    void TearDown() override {
        service_.reset();
        if (db_) db_->close();
        db_.reset();
    }

    void open() {
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        cache_ = std::make_unique<auth::TokenCache>();
        service_ = std::make_unique<SessionService>(*db_, keys_.hasher, keys_.sealer, *cache_,
                                                    clock_, config_);
    }

    // Simulates a server restart: a fresh database handle and an empty cache.
    void restart() {
        service_.reset();
        db_->close();
        db_.reset();
        open();
        ASSERT_TRUE(service_->warm_cache());
    }

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        boost::asio::io_context io;
        auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
        io.run();
        return future.get();
    }

    IssuedTokens sign_in(const std::string& device, bool refreshable = true) {
        auto created = storage::write_sync<NewSession>(*db_, [&](storage::WriteTxn& txn) {
            storage::UserRecord user{"@alice:localhost", "", false, false, false, kStart};
            (void)txn.insert_user(user);
            storage::DeviceRecord d;
            d.user_id = "@alice:localhost";
            d.device_id = device;
            (void)txn.ensure_device(d);
            return service_->create_session(txn, "@alice:localhost", device, refreshable, false);
        });
        EXPECT_TRUE(created) << created.error().message;
        service_->publish_session(*created);
        return created->tokens;
    }

    Result<Identity> whoami(const std::string& token, bool allow_expired = false) {
        return run(service_->authenticate(token, allow_expired));
    }

    Result<IssuedTokens> refresh(const std::string& token,
                                 RefreshFlavor flavor = RefreshFlavor::kModern) {
        return run(service_->refresh(token, flavor));
    }

    static bool soft(const Error& e) {
        auto it = e.extra.find("soft_logout");
        return it != e.extra.end() && it->value().as_bool();
    }

    ScratchDir dir_{"myelin-session-test"};
    TokenKeys keys_;
    ManualClock clock_{kStart};
    TokensConfig config_;
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<auth::TokenCache> cache_;
    std::unique_ptr<SessionService> service_;
};

TEST_F(SessionServiceTest, SignInIssuesWorkingPairWithExpiry) {
    auto t = sign_in("DEV1");
    ASSERT_TRUE(t.refresh_token);
    ASSERT_TRUE(t.expires_in_ms);
    EXPECT_EQ(*t.expires_in_ms, 5 * 60'000);
    auto id = whoami(t.access_token);
    ASSERT_TRUE(id);
    EXPECT_EQ(id->user_id(), "@alice:localhost");
    EXPECT_EQ(id->device_id(), "DEV1");
}

TEST_F(SessionServiceTest, NonRefreshableTokensDoNotExpireByDefault) {
    auto t = sign_in("DEV1", false);
    EXPECT_FALSE(t.refresh_token);
    EXPECT_FALSE(t.expires_in_ms);
    clock_.advance_ms(365LL * 86'400'000);
    EXPECT_TRUE(whoami(t.access_token));
}

TEST_F(SessionServiceTest, ExpiredAccessTokenIsSoftLogoutAndRefreshWorks) {
    auto t = sign_in("DEV1");
    clock_.advance_ms(5 * 60'000 + 1);
    auto expired = whoami(t.access_token);
    ASSERT_FALSE(expired);
    EXPECT_EQ(expired.error().errcode, "M_UNKNOWN_TOKEN");
    EXPECT_TRUE(soft(expired.error()));
    EXPECT_TRUE(whoami(t.access_token, /*allow_expired=*/true));
    auto next = refresh(*t.refresh_token);
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_TRUE(whoami(next->access_token));
}

TEST_F(SessionServiceTest, RetryBeforeFirstUseReturnsIdenticalPairEvenAfterRestart) {
    auto t = sign_in("DEV1");
    auto first = refresh(*t.refresh_token);
    ASSERT_TRUE(first);
    auto again = refresh(*t.refresh_token);
    ASSERT_TRUE(again);
    EXPECT_EQ(first->access_token, again->access_token);
    EXPECT_EQ(first->refresh_token, again->refresh_token);
    restart();
    auto after_restart = refresh(*t.refresh_token);
    ASSERT_TRUE(after_restart) << after_restart.error().message;
    EXPECT_EQ(first->access_token, after_restart->access_token);
    EXPECT_EQ(first->refresh_token, after_restart->refresh_token);
    EXPECT_TRUE(whoami(after_restart->access_token));
}

TEST_F(SessionServiceTest, OldAccessTokenDiesAtFirstUseOfSuccessor) {
    auto t = sign_in("DEV1");
    auto next = refresh(*t.refresh_token);
    ASSERT_TRUE(next);
    EXPECT_TRUE(whoami(t.access_token)) << "AT0 works until AT1 is used";
    ASSERT_TRUE(whoami(next->access_token));
    auto old = whoami(t.access_token);
    ASSERT_FALSE(old);
    EXPECT_EQ(old.error().errcode, "M_UNKNOWN_TOKEN");
    EXPECT_TRUE(whoami(next->access_token)) << "presenting AT0 revoked nothing";
    restart();
    EXPECT_FALSE(whoami(t.access_token)) << "the first use was durable";
    EXPECT_TRUE(whoami(next->access_token));
}

TEST_F(SessionServiceTest, ReuseAfterSuccessorUsedRevokesSessionButNotDevice) {
    auto t = sign_in("DEV1");
    auto next = refresh(*t.refresh_token);
    ASSERT_TRUE(next);
    ASSERT_TRUE(whoami(next->access_token));
    auto reuse = refresh(*t.refresh_token);
    ASSERT_FALSE(reuse);
    EXPECT_EQ(reuse.error().status, 401);
    EXPECT_EQ(reuse.error().errcode, "M_UNKNOWN_TOKEN");
    EXPECT_TRUE(soft(reuse.error()));
    auto dead = whoami(next->access_token);
    ASSERT_FALSE(dead);
    EXPECT_TRUE(soft(dead.error()));
    EXPECT_FALSE(refresh(*next->refresh_token));
    auto device = storage::read_sync<std::optional<storage::DeviceRecord>>(
        *db_, [](storage::ReadTxn& txn) { return txn.find_device("@alice:localhost", "DEV1"); });
    ASSERT_TRUE(device);
    EXPECT_TRUE(device->has_value()) << "the device survives";
    auto events = storage::read_sync<std::vector<storage::SecurityEventRecord>>(
        *db_, [](storage::ReadTxn& txn) { return txn.security_events("@alice:localhost", 10); });
    ASSERT_TRUE(events);
    ASSERT_FALSE(events->empty());
    EXPECT_EQ(events->front().kind, "refresh_reuse_detected");
}

TEST_F(SessionServiceTest, ReuseWithRevocationSwitchedOffKeepsSession) {
    config_.refresh_reuse_revokes_session = false;
    service_ = std::make_unique<SessionService>(*db_, keys_.hasher, keys_.sealer, *cache_, clock_,
                                                config_);
    auto t = sign_in("DEV1");
    auto next = refresh(*t.refresh_token);
    ASSERT_TRUE(next);
    ASSERT_TRUE(refresh(*next->refresh_token));  // RT1 used
    auto reuse = refresh(*t.refresh_token);
    ASSERT_FALSE(reuse);
    EXPECT_EQ(reuse.error().errcode, "M_UNKNOWN_TOKEN");
}

// PostgreSQL runs a write job again after a lost serialization race: the refresh's rate-limit
// token is drawn once per request, not once per run.
TEST_F(SessionServiceTest, ARefreshRunAgainByTheBackendDrawsOneRateLimitToken) {
    RateLimitsConfig limits;
    limits.refresh = {0.001, 2.0};  // two refreshes, then (practically) none
    InMemoryRateLimitStore store;
    RateLimiter limiter(limits, "localhost", store, clock_);
    test_support::RetryingDatabase retrying(*db_);
    SessionService service(retrying, keys_.hasher, keys_.sealer, *cache_, clock_, config_);
    service.set_rate_limiter(&limiter);

    auto first = sign_in("DEV");
    auto second = run(service.refresh(*first.refresh_token, RefreshFlavor::kModern));
    ASSERT_TRUE(second) << second.error().message;
    auto third = run(service.refresh(*second->refresh_token, RefreshFlavor::kModern));
    ASSERT_TRUE(third) << third.error().message;
    EXPECT_GE(retrying.retries.load(), 2);
    auto refused = run(service.refresh(*third->refresh_token, RefreshFlavor::kModern));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().status, 429);
}

TEST_F(SessionServiceTest, ChainOfRefreshesWorks) {
    auto t = sign_in("DEV1");
    std::string rt = *t.refresh_token;
    for (int i = 0; i < 5; ++i) {
        auto next = refresh(rt);
        ASSERT_TRUE(next) << "refresh " << i << ": " << next.error().message;
        rt = *next->refresh_token;
    }
}

TEST_F(SessionServiceTest, LegacyRefreshKillsTokenAndOldAccessTokenAtOnce) {
    auto t = sign_in("DEV1");
    auto next = refresh(*t.refresh_token, RefreshFlavor::kLegacy);
    ASSERT_TRUE(next);
    EXPECT_FALSE(whoami(t.access_token)) << "old access token dies at once";
    EXPECT_TRUE(whoami(next->access_token));
    auto again = refresh(*t.refresh_token, RefreshFlavor::kLegacy);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().status, 403);
    EXPECT_EQ(again.error().errcode, "M_FORBIDDEN");
    EXPECT_FALSE(whoami(next->access_token)) << "reuse revoked the session";
}

TEST_F(SessionServiceTest, LegacyAndModernShareOneEngine) {
    auto t = sign_in("DEV1");
    auto legacy = refresh(*t.refresh_token, RefreshFlavor::kLegacy);
    ASSERT_TRUE(legacy);
    auto modern = refresh(*legacy->refresh_token, RefreshFlavor::kModern);
    ASSERT_TRUE(modern);
    auto legacy_again = refresh(*modern->refresh_token, RefreshFlavor::kLegacy);
    ASSERT_TRUE(legacy_again);
    EXPECT_TRUE(whoami(legacy_again->access_token));
}

TEST_F(SessionServiceTest, MalformedOrUnknownRefreshTokenRevokesNothing) {
    auto t = sign_in("DEV1");
    std::string tampered = *t.refresh_token;
    tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
    auto r = refresh(tampered);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errcode, "M_UNKNOWN_TOKEN");
    EXPECT_FALSE(refresh(auth::generate_token(auth::TokenKind::kRefresh)));
    EXPECT_FALSE(refresh(t.access_token)) << "an access token is not a refresh token";
    EXPECT_TRUE(whoami(t.access_token));
    EXPECT_TRUE(refresh(*t.refresh_token));
}

TEST_F(SessionServiceTest, IdleTimeoutEndsSessionWithSoftLogout) {
    config_.session_idle_timeout = std::chrono::hours(1);
    service_ = std::make_unique<SessionService>(*db_, keys_.hasher, keys_.sealer, *cache_, clock_,
                                                config_);
    auto t = sign_in("DEV1");
    clock_.advance_ms(3'600'001);
    auto r = refresh(*t.refresh_token);
    ASSERT_FALSE(r);
    EXPECT_TRUE(soft(r.error()));
}

TEST_F(SessionServiceTest, ExpiresInNeverReachesPastAbsoluteSessionEnd) {
    config_.session_absolute_lifetime = std::chrono::minutes(7);
    service_ = std::make_unique<SessionService>(*db_, keys_.hasher, keys_.sealer, *cache_, clock_,
                                                config_);
    auto t = sign_in("DEV1");
    EXPECT_EQ(*t.expires_in_ms, 5 * 60'000);
    clock_.advance_ms(4 * 60'000);
    auto next = refresh(*t.refresh_token);
    ASSERT_TRUE(next);
    EXPECT_EQ(*next->expires_in_ms, 3 * 60'000) << "capped by the session's end";
    clock_.advance_ms(3 * 60'000);
    auto ended = whoami(next->access_token);
    ASSERT_FALSE(ended);
    EXPECT_TRUE(soft(ended.error()));
}

TEST_F(SessionServiceTest, SignInAgainOnSameDeviceReplacesItsTokens) {
    auto first = sign_in("DEV1");
    auto second = sign_in("DEV1");
    auto old = whoami(first.access_token);
    ASSERT_FALSE(old);
    EXPECT_FALSE(soft(old.error()));
    EXPECT_FALSE(refresh(*first.refresh_token));
    EXPECT_TRUE(whoami(second.access_token));
}

TEST_F(SessionServiceTest, LogoutIsHardAndImmediate) {
    auto a = sign_in("DEV1");
    auto b = sign_in("DEV2");
    auto id = whoami(a.access_token);
    ASSERT_TRUE(id);
    ASSERT_TRUE(run(service_->logout(*id)));
    auto gone = whoami(a.access_token);
    ASSERT_FALSE(gone);
    EXPECT_FALSE(soft(gone.error()));
    EXPECT_FALSE(refresh(*a.refresh_token));
    EXPECT_TRUE(whoami(b.access_token));
    ASSERT_TRUE(run(service_->logout_all("@alice:localhost")));
    EXPECT_FALSE(whoami(b.access_token));
}

TEST_F(SessionServiceTest, NoTokenReachesTheDatabaseFiles) {
    std::vector<std::string> secrets;
    auto t = sign_in("DEV1");
    secrets.push_back(t.access_token);
    secrets.push_back(*t.refresh_token);
    auto n1 = refresh(*t.refresh_token);
    ASSERT_TRUE(n1);
    secrets.push_back(n1->access_token);
    secrets.push_back(*n1->refresh_token);
    restart();
    service_.reset();
    db_->close();
    db_.reset();
    for (const auto& entry : fs::directory_iterator(dir_.path())) {
        std::ifstream in(entry.path(), std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        for (const auto& s : secrets) {
            EXPECT_EQ(bytes.find(s), std::string::npos) << "token found in " << entry.path();
            EXPECT_EQ(bytes.find(s.substr(5, 43)), std::string::npos) << entry.path();
        }
    }
}

}  // namespace
}  // namespace myelin::service
