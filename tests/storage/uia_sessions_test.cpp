// The UIA session methods of ReadTxn / WriteTxn on every backend: round trip, the compare-and-swap
// of completed stages, using a session up exactly once (also when two opens of the database, as
// two server processes, race for it), the count of live sessions and pruning by age with the
// registration tokens that unfinished sessions held.

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"

#include "test_database.hpp"

namespace myelin::storage {
namespace {

using Stages = std::vector<std::string>;

UiaSessionRecord make_uia(const std::string& id, std::int64_t created_ts) {
    UiaSessionRecord s;
    s.session_id = id;
    s.endpoint = "DELETE /devices/ABC";
    s.user_id = "@alice:x";
    s.flows = {{"m.login.registration_token", "m.login.dummy"}, {"m.login.password"}};
    s.created_ts = created_ts;
    return s;
}

class UiaSessionsTest : public testing::BackendTest {
protected:
    template <typename T, typename Fn>
    T write_on(Database& db, Fn fn) {
        Result<T> r = write_sync<T>(db, std::move(fn));
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        if constexpr (!std::is_void_v<T>) return r ? std::move(*r) : T{};
    }
    template <typename T, typename Fn>
    T write(Fn fn) {
        return write_on<T>(*db_, std::move(fn));
    }
    template <typename T, typename Fn>
    T read(Fn fn) {
        Result<T> r = read_sync<T>(*db_, std::move(fn));
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        return r ? std::move(*r) : T{};
    }

    bool insert(const UiaSessionRecord& s) {
        return write<bool>([&](WriteTxn& txn) { return txn.insert_uia_session(s); });
    }
    std::optional<UiaSessionRecord> find(const std::string& id) {
        return read<std::optional<UiaSessionRecord>>(
            [&](ReadTxn& txn) { return txn.find_uia_session(id); });
    }
    bool update(const std::string& id, const Stages& expected, const Stages& completed,
                std::optional<std::string_view> token, std::int64_t min_created) {
        return write<bool>([&](WriteTxn& txn) {
            return txn.update_uia_session_stages(id, expected, completed, token, min_created);
        });
    }
    std::optional<UiaSessionRecord> finish(const std::string& id, std::int64_t min_created) {
        return write<std::optional<UiaSessionRecord>>(
            [&](WriteTxn& txn) { return txn.finish_uia_session(id, min_created); });
    }
    std::int64_t live(std::int64_t min_created) {
        return read<std::int64_t>(
            [&](ReadTxn& txn) { return txn.count_live_uia_sessions(min_created); });
    }
    UiaPruneResult prune(std::int64_t before_ts, int limit) {
        return write<UiaPruneResult>(
            [&](WriteTxn& txn) { return txn.prune_uia_sessions(before_ts, limit); });
    }
};

TEST_P(UiaSessionsTest, RoundTripAndDuplicateIdsAreRefused) {
    auto s = make_uia("sessionA", 1000);
    s.registration = true;
    s.user_id = "";
    s.completed = {"m.login.registration_token"};
    s.registration_token = "tok-1";
    EXPECT_TRUE(insert(s));
    auto other = make_uia("sessionA", 2000);
    EXPECT_FALSE(insert(other));  // the id exists: nothing changes

    auto got = find("sessionA");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->session_id, "sessionA");
    EXPECT_EQ(got->endpoint, "DELETE /devices/ABC");
    EXPECT_EQ(got->user_id, "");
    EXPECT_EQ(got->flows, s.flows);
    EXPECT_TRUE(got->registration);
    EXPECT_EQ(got->created_ts, 1000);
    EXPECT_EQ(got->completed, (Stages{"m.login.registration_token"}));
    EXPECT_EQ(got->registration_token, "tok-1");
    EXPECT_FALSE(got->finished);

    EXPECT_TRUE(insert(make_uia("sessionB", 1000)));
    got = find("sessionB");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->user_id, "@alice:x");
    EXPECT_FALSE(got->registration);
    EXPECT_TRUE(got->completed.empty());
    EXPECT_FALSE(got->registration_token);

    EXPECT_FALSE(find("nosuch"));
    EXPECT_FALSE(find("sessiona"));  // ids compare byte by byte
}

TEST_P(UiaSessionsTest, StagesAreACompareAndSwapOnTheCompletedList) {
    ASSERT_TRUE(insert(make_uia("s", 1000)));
    const Stages one{"m.login.registration_token"};
    const Stages two{"m.login.registration_token", "m.login.dummy"};

    // Appending needs the list as it is stored.
    EXPECT_FALSE(update("s", one, two, std::nullopt, 0));
    EXPECT_TRUE(update("s", {}, one, "tok", 0));
    EXPECT_FALSE(update("s", {}, one, std::nullopt, 0));  // a second writer of the same stage
    auto got = find("s");
    EXPECT_EQ(got->completed, one);
    EXPECT_EQ(got->registration_token, "tok");

    // No token given: the held one stays.
    EXPECT_TRUE(update("s", one, two, std::nullopt, 0));
    got = find("s");
    EXPECT_EQ(got->completed, two);
    EXPECT_EQ(got->registration_token, "tok");

    // Expired (created before min_created_ts) or unknown: nothing matches.
    EXPECT_FALSE(update("s", two, one, std::nullopt, 1001));
    EXPECT_TRUE(update("s", two, one, std::nullopt, 1000));  // created exactly at the limit
    EXPECT_FALSE(update("nosuch", {}, one, std::nullopt, 0));

    // Finished: nothing matches any more.
    ASSERT_TRUE(finish("s", 0));
    EXPECT_FALSE(update("s", one, two, std::nullopt, 0));
    EXPECT_EQ(find("s")->completed, one);
}

TEST_P(UiaSessionsTest, FinishUsesASessionUpExactlyOnce) {
    auto s = make_uia("s", 1000);
    s.registration_token = "tok";
    s.completed = {"m.login.password"};
    ASSERT_TRUE(insert(s));
    ASSERT_TRUE(insert(make_uia("old", 500)));

    EXPECT_FALSE(finish("old", 501));  // expired
    auto done = finish("s", 1000);
    ASSERT_TRUE(done);
    EXPECT_EQ(done->session_id, "s");
    EXPECT_TRUE(done->finished);
    EXPECT_EQ(done->registration_token, "tok");  // now the caller's
    EXPECT_EQ(done->completed, (Stages{"m.login.password"}));
    EXPECT_EQ(done->flows, s.flows);

    EXPECT_FALSE(finish("s", 0));
    EXPECT_FALSE(finish("nosuch", 0));
    EXPECT_TRUE(find("s")->finished);
}

TEST_P(UiaSessionsTest, LiveCountSkipsFinishedAndExpiredSessions) {
    EXPECT_EQ(live(0), 0);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE(insert(make_uia("s" + std::to_string(i), 100 * i)));
    EXPECT_EQ(live(0), 4);
    EXPECT_EQ(live(100), 3);  // s0 (created at 0) is expired
    EXPECT_EQ(live(301), 0);
    ASSERT_TRUE(finish("s2", 0));
    EXPECT_EQ(live(0), 3);
    EXPECT_EQ(live(100), 2);
}

TEST_P(UiaSessionsTest, PruneDeletesOldestInBatchesAndReportsTheTokensUnfinishedOnesHeld) {
    // created_ts: 10 (token a, finished), 20 (token b), 30 (no token), 40 (token b), 50 (young).
    auto add = [this](const std::string& id, std::int64_t ts, std::optional<std::string> token) {
        auto s = make_uia(id, ts);
        s.registration_token = std::move(token);
        ASSERT_TRUE(insert(s));
    };
    add("p10", 10, "a");
    add("p20", 20, "b");
    add("p30", 30, std::nullopt);
    add("p40", 40, "b");
    add("p50", 50, "c");
    ASSERT_TRUE(finish("p10", 0));

    EXPECT_EQ(prune(45, 0).deleted, 0);
    auto first = prune(45, 2);
    EXPECT_EQ(first.deleted, 2);
    // p10's token went to the request it authorized; only p20 still held one.
    EXPECT_EQ(first.held_tokens, (Stages{"b"}));
    EXPECT_FALSE(find("p10"));
    EXPECT_FALSE(find("p20"));
    EXPECT_TRUE(find("p30"));

    auto second = prune(45, 10);
    EXPECT_EQ(second.deleted, 2);
    EXPECT_EQ(second.held_tokens, (Stages{"b"}));
    EXPECT_EQ(prune(45, 10).deleted, 0);
    EXPECT_TRUE(find("p50"));  // not older than the cutoff
    EXPECT_EQ(live(0), 1);
}

// Two opens of the same database stand in for two server processes behind a load balancer:
// both try to use the same completed session up, many times over; exactly one wins each race.
TEST_P(UiaSessionsTest, OfTwoProcessesRacingToFinishExactlyOneWins) {
    auto second = testdb_->open();
    ASSERT_TRUE(second) << second.error().message;
    constexpr int kRounds = 40;
    for (int round = 0; round < kRounds; ++round) {
        ASSERT_TRUE(insert(make_uia("race" + std::to_string(round), 1000)));
    }
    std::atomic<int> wins{0};
    std::atomic<int> failures{0};
    auto racer = [&](Database& db) {
        for (int round = 0; round < kRounds; ++round) {
            const std::string id = "race" + std::to_string(round);
            auto r = write_sync<std::optional<UiaSessionRecord>>(
                db, [&](WriteTxn& txn) { return txn.finish_uia_session(id, 0); });
            if (!r) {
                ++failures;
            } else if (*r) {
                ++wins;
            }
        }
    };
    std::thread a([&] { racer(*db_); });
    std::thread b([&] { racer(**second); });
    a.join();
    b.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(wins.load(), kRounds);
    (*second)->close();
}

MYELIN_INSTANTIATE_ON_BACKENDS(UiaSessionsTest);

}  // namespace
}  // namespace myelin::storage
