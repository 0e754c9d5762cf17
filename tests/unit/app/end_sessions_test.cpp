// SessionService::end_sessions against a real SQLite database: which sessions end, which
// devices go, that the kept session survives, and that the token cache knows at once.

#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include "myelin/service/session_service.hpp"
#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "service_test_env.hpp"

namespace myelin::service {
namespace {

using test_support::ScratchDir;
using test_support::TokenKeys;
constexpr std::int64_t kStart = 1'700'000'000'000;
constexpr const char* kAlice = "@alice:localhost";

class EndSessionsTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        service_ = std::make_unique<SessionService>(*db_, keys_.hasher, keys_.sealer, cache_,
                                                    clock_, TokensConfig{});
    }

    void TearDown() override {
        service_.reset();
        if (db_) db_->close();
        db_.reset();
    }

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        boost::asio::io_context io;
        auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
        io.run();
        return future.get();
    }

    struct SignedIn {
        IssuedTokens tokens;
        std::int64_t session_id = 0;
    };

    SignedIn sign_in(const std::string& user, const std::string& device) {
        auto created = storage::write_sync<NewSession>(*db_, [&](storage::WriteTxn& txn) {
            storage::UserRecord u;
            u.user_id = user;
            u.created_ts = kStart;
            (void)txn.insert_user(u);
            storage::DeviceRecord d;
            d.user_id = user;
            d.device_id = device;
            (void)txn.ensure_device(d);
            return service_->create_session(txn, user, device, true, false);
        });
        EXPECT_TRUE(created) << created.error().message;
        service_->publish_session(*created);
        return {created->tokens, created->session.session_id};
    }

    bool works(const SignedIn& s) {
        // From the cache alone: end_sessions must have updated it before returning.
        auto now = service_->authenticate_now(s.tokens.access_token, false);
        return std::holds_alternative<Identity>(now);
    }

    std::set<std::string> devices(const std::string& user) {
        auto listed = storage::read_sync<std::vector<storage::DeviceRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.list_devices(user); });
        EXPECT_TRUE(listed);
        std::set<std::string> out;
        for (const auto& d : *listed) out.insert(d.device_id);
        return out;
    }

    storage::RevokeReason reason_of(std::int64_t session_id) {
        auto s = storage::read_sync<std::optional<storage::SessionRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.find_session(session_id); });
        EXPECT_TRUE(s && *s);
        return (*s)->revoked_reason;
    }

    std::vector<storage::SecurityEventRecord> events(const std::string& user) {
        auto e = storage::read_sync<std::vector<storage::SecurityEventRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.security_events(user, 100); });
        EXPECT_TRUE(e);
        return *e;
    }

    ScratchDir dir_{"myelin-end-sessions-test"};
    TokenKeys keys_;
    ManualClock clock_{kStart};
    std::unique_ptr<storage::Database> db_;
    auth::TokenCache cache_;
    std::unique_ptr<SessionService> service_;
};

TEST_F(EndSessionsTest, EndsAllButTheKeptSessionAndDeletesOtherDevices) {
    auto a = sign_in(kAlice, "A");
    auto b = sign_in(kAlice, "B");
    auto c = sign_in(kAlice, "C");
    auto bob = sign_in("@bob:localhost", "B");
    auto ended = run(service_->end_sessions(kAlice, std::nullopt, a.session_id,
                                            storage::RevokeReason::kPasswordChange, true));
    ASSERT_TRUE(ended) << ended.error().message;
    EXPECT_EQ(*ended, 2u);
    EXPECT_TRUE(works(a));
    EXPECT_FALSE(works(b));
    EXPECT_FALSE(works(c));
    EXPECT_TRUE(works(bob));
    EXPECT_EQ(devices(kAlice), (std::set<std::string>{"A"}));
    EXPECT_EQ(devices("@bob:localhost"), (std::set<std::string>{"B"}));
    EXPECT_EQ(reason_of(b.session_id), storage::RevokeReason::kPasswordChange);
    // The ended session's refresh token is refused too.
    auto refreshed = run(service_->refresh(*b.tokens.refresh_token, RefreshFlavor::kModern));
    ASSERT_FALSE(refreshed);
    EXPECT_EQ(refreshed.error().status, 401);
    auto evs = events(kAlice);
    ASSERT_FALSE(evs.empty());
    EXPECT_EQ(evs.front().kind, "sessions_revoked");
}

TEST_F(EndSessionsTest, WithoutKeptSessionEndsEverything) {
    auto a = sign_in(kAlice, "A");
    auto b = sign_in(kAlice, "B");
    auto ended = run(service_->end_sessions(kAlice, std::nullopt, std::nullopt,
                                            storage::RevokeReason::kDeactivated, true));
    ASSERT_TRUE(ended);
    EXPECT_EQ(*ended, 2u);
    EXPECT_FALSE(works(a));
    EXPECT_FALSE(works(b));
    EXPECT_TRUE(devices(kAlice).empty());
}

TEST_F(EndSessionsTest, OneDeviceOnly) {
    auto a = sign_in(kAlice, "A");
    auto b = sign_in(kAlice, "B");
    auto ended = run(service_->end_sessions(kAlice, std::string("B"), std::nullopt,
                                            storage::RevokeReason::kLogout, true));
    ASSERT_TRUE(ended);
    EXPECT_EQ(*ended, 1u);
    EXPECT_TRUE(works(a));
    EXPECT_FALSE(works(b));
    EXPECT_EQ(devices(kAlice), (std::set<std::string>{"A"}));
}

TEST_F(EndSessionsTest, KeepsDevicesWhenAsked) {
    auto a = sign_in(kAlice, "A");
    auto b = sign_in(kAlice, "B");
    auto ended = run(service_->end_sessions(kAlice, std::nullopt, std::nullopt,
                                            storage::RevokeReason::kAdmin, false));
    ASSERT_TRUE(ended);
    EXPECT_EQ(*ended, 2u);
    EXPECT_FALSE(works(a));
    EXPECT_FALSE(works(b));
    EXPECT_EQ(devices(kAlice), (std::set<std::string>{"A", "B"}));
    EXPECT_EQ(reason_of(a.session_id), storage::RevokeReason::kAdmin);
}

TEST_F(EndSessionsTest, NothingToEndRecordsNoEvent) {
    auto ended = run(service_->end_sessions("@nobody:localhost", std::nullopt, std::nullopt,
                                            storage::RevokeReason::kAdmin, true));
    ASSERT_TRUE(ended);
    EXPECT_EQ(*ended, 0u);
    EXPECT_TRUE(events("@nobody:localhost").empty());
}

}  // namespace
}  // namespace myelin::service
