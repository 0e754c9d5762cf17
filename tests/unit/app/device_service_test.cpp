// DeviceService and SessionService::end_device_sessions against a real SQLite database: list,
// get and rename with their 404s; deletion ends the devices' sessions in the token cache, takes
// ONE write job even for 2,000 devices, skips ids that name no device, leaves other users'
// devices alone, and records a "device_deleted" security event per deleted device.

#include "myelin/service/device_service.hpp"

#include <algorithm>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "counting_database.hpp"
#include "service_test_env.hpp"

namespace myelin::service {
namespace {

using test_support::CountingDatabase;
using test_support::ScratchDir;
using test_support::TokenKeys;
constexpr std::int64_t kStart = 1'700'000'000'000;
const std::string kAlice = "@alice:localhost";
const std::string kBob = "@bob:localhost";

class DeviceServiceTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto db = storage::open_sqlite((dir_.path() / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        db_ = std::move(*db);
        counting_ = std::make_unique<CountingDatabase>(*db_);
        sessions_ = std::make_unique<SessionService>(*counting_, keys_.hasher, keys_.sealer, cache_,
                                                     clock_, TokensConfig{});
        devices_ = std::make_unique<DeviceService>(*counting_, *sessions_);
        auto users = storage::write_sync<bool>(*db_, [](storage::WriteTxn& txn) -> Result<bool> {
            for (const auto& id : {kAlice, kBob}) {
                if (auto r = txn.insert_user({id, "", false, false, false, kStart}); !r) {
                    return r.error();
                }
            }
            return true;
        });
        ASSERT_TRUE(users);
    }

    void TearDown() override {
        devices_.reset();
        sessions_.reset();
        if (db_) db_->close();
    }

    template <typename T>
    T run(boost::asio::awaitable<T> task) {
        boost::asio::io_context io;
        auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
        io.run();
        return future.get();
    }

    // Signs `user` in on `device` (creating it) and returns the access token.
    std::string sign_in(const std::string& user, const std::string& device) {
        auto created = storage::write_sync<NewSession>(*db_, [&](storage::WriteTxn& txn) {
            storage::DeviceRecord d;
            d.user_id = user;
            d.device_id = device;
            d.created_ts = kStart;
            (void)txn.ensure_device(d);
            return sessions_->create_session(txn, user, device, false, false);
        });
        EXPECT_TRUE(created) << created.error().message;
        sessions_->publish_session(*created);
        return created->tokens.access_token;
    }

    bool works(const std::string& token) {
        return static_cast<bool>(run(sessions_->authenticate(token, false)));
    }

    std::vector<storage::SecurityEventRecord> events(const std::string& user) {
        auto found = storage::read_sync<std::vector<storage::SecurityEventRecord>>(
            *db_, [&](storage::ReadTxn& txn) { return txn.security_events(user, 10'000); });
        EXPECT_TRUE(found);
        return found ? *found : std::vector<storage::SecurityEventRecord>{};
    }

    ScratchDir dir_{"myelin-device-test"};
    TokenKeys keys_;
    ManualClock clock_{kStart};
    std::unique_ptr<storage::Database> db_;
    std::unique_ptr<CountingDatabase> counting_;
    auth::TokenCache cache_;
    std::unique_ptr<SessionService> sessions_;
    std::unique_ptr<DeviceService> devices_;
};

TEST_F(DeviceServiceTest, ListGetAndRename) {
    sign_in(kAlice, "B");
    sign_in(kAlice, "A");
    sign_in(kBob, "C");
    auto list = run(devices_->list(kAlice));
    ASSERT_TRUE(list);
    ASSERT_EQ(list->size(), 2U);
    EXPECT_EQ((*list)[0].device_id, "A");
    EXPECT_EQ((*list)[1].device_id, "B");

    auto renamed = run(devices_->rename(kAlice, "A", std::string("Phone")));
    ASSERT_TRUE(renamed) << renamed.error().message;
    auto a = run(devices_->get(kAlice, "A"));
    ASSERT_TRUE(a);
    EXPECT_EQ(a->display_name, std::optional<std::string>("Phone"));

    // nullopt leaves the name as it is.
    ASSERT_TRUE(run(devices_->rename(kAlice, "A", std::nullopt)));
    EXPECT_EQ(run(devices_->get(kAlice, "A"))->display_name, std::optional<std::string>("Phone"));
}

TEST_F(DeviceServiceTest, UnknownAndForeignDevicesAreNotFoundAndNeverCreated) {
    sign_in(kBob, "C");
    auto missing = run(devices_->get(kAlice, "C"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().status, 404);
    EXPECT_EQ(missing.error().errcode, "M_NOT_FOUND");
    auto rename = run(devices_->rename(kAlice, "C", std::string("mine")));
    ASSERT_FALSE(rename);
    EXPECT_EQ(rename.error().errcode, "M_NOT_FOUND");
    auto unchanged = run(devices_->rename(kAlice, "C", std::nullopt));
    ASSERT_FALSE(unchanged);
    EXPECT_EQ(unchanged.error().errcode, "M_NOT_FOUND");
    EXPECT_TRUE(run(devices_->list(kAlice))->empty());
    EXPECT_FALSE(run(devices_->get(kBob, "C"))->display_name);
}

TEST_F(DeviceServiceTest, RemoveEndsOnlyTheListedDevicesSessions) {
    auto a1 = sign_in(kAlice, "A");
    auto b = sign_in(kAlice, "B");
    auto keep = sign_in(kAlice, "KEEP");
    auto bob = sign_in(kBob, "A");  // the same device id under another user
    ASSERT_TRUE(works(a1));

    auto removed = run(devices_->remove(kAlice, {"A", "B", "A", "NEVER"}));
    ASSERT_TRUE(removed) << removed.error().message;
    EXPECT_EQ(*removed, 2U);
    // From the cache, before any storage read: the revocation reached it before returning.
    auto now_a = sessions_->authenticate_now(a1, false);
    EXPECT_FALSE(std::holds_alternative<Identity>(now_a));
    EXPECT_FALSE(works(a1));
    EXPECT_FALSE(works(b));
    EXPECT_TRUE(works(keep));
    EXPECT_TRUE(works(bob));
    auto left = run(devices_->list(kAlice));
    ASSERT_TRUE(left);
    ASSERT_EQ(left->size(), 1U);
    EXPECT_EQ((*left)[0].device_id, "KEEP");
    EXPECT_EQ(run(devices_->list(kBob))->size(), 1U);

    auto logged = events(kAlice);
    std::vector<std::string> deleted;
    for (const auto& e : logged) {
        if (e.kind == "device_deleted") deleted.push_back(e.device_id);
    }
    std::sort(deleted.begin(), deleted.end());
    EXPECT_EQ(deleted, (std::vector<std::string>{"A", "B"}));

    // Already gone: fine, nothing deleted.
    auto again = run(devices_->remove(kAlice, {"A"}));
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, 0U);
}

TEST_F(DeviceServiceTest, RemovingTwoThousandDevicesIsOneWriteJob) {
    constexpr int kDevices = 2000;
    std::vector<std::string> ids;
    auto made = storage::write_sync<bool>(*db_, [&](storage::WriteTxn& txn) -> Result<bool> {
        for (int i = 0; i < kDevices; ++i) {
            storage::DeviceRecord d;
            d.user_id = kAlice;
            d.device_id = "BULK" + std::to_string(i);
            d.created_ts = kStart;
            if (auto r = txn.ensure_device(d); !r) return r.error();
            storage::SessionRecord s;
            s.user_id = kAlice;
            s.device_id = d.device_id;
            s.created_ts = kStart;
            if (auto r = txn.insert_session(s); !r) return r.error();
            ids.push_back(d.device_id);
        }
        return true;
    });
    ASSERT_TRUE(made);
    auto real = sign_in(kAlice, "BULK7");  // one of them with a live, cached token
    auto keep = sign_in(kAlice, "KEEP");

    const int writes_before = counting_->writes.load();
    auto removed = run(devices_->remove(kAlice, ids));
    ASSERT_TRUE(removed) << removed.error().message;
    EXPECT_EQ(*removed, static_cast<std::size_t>(kDevices));
    EXPECT_EQ(counting_->writes.load() - writes_before, 1);
    EXPECT_FALSE(works(real));
    EXPECT_TRUE(works(keep));
    EXPECT_EQ(run(devices_->list(kAlice))->size(), 1U);
    auto live = storage::read_sync<std::vector<storage::SessionRecord>>(
        *db_, [](storage::ReadTxn& txn) { return txn.live_sessions(kAlice, std::nullopt); });
    ASSERT_TRUE(live);
    EXPECT_EQ(live->size(), 1U);
}

TEST_F(DeviceServiceTest, FailedWriteDeletesNothing) {
    auto a = sign_in(kAlice, "A");
    counting_->fail_writes = true;
    auto removed = run(devices_->remove(kAlice, {"A"}));
    ASSERT_FALSE(removed);
    EXPECT_EQ(removed.error().status, 503);
    counting_->fail_writes = false;
    EXPECT_TRUE(works(a));
    EXPECT_EQ(run(devices_->list(kAlice))->size(), 1U);
}

}  // namespace
}  // namespace myelin::service
