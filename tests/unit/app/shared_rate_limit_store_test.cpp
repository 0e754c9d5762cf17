// The shared rate-limit store with an in-memory stand-in for the database's buckets (the
// PostgreSQL statement itself is tested in the storage tier): two instances spend one budget
// once they have exchanged, draws survive a failed exchange, and given-back tokens are given
// back to the shared bucket too.

#include "myelin/service/shared_rate_limit_store.hpp"

#include <map>
#include <memory>

#include <gtest/gtest.h>

namespace myelin::service {
namespace {

constexpr std::int64_t kStart = 1'700'000'000'000;

// The shared buckets, with the semantics of the PostgreSQL statement.
struct SharedTable {
    std::map<std::pair<int, std::string>, std::int64_t> tat;
    int fail_next = 0;
    std::vector<std::vector<storage::BucketDraw>> calls;
};

class TableExchange final : public storage::RateLimitExchange {
public:
    explicit TableExchange(SharedTable& table) : table_(table) {}
    Result<std::vector<storage::SharedBucket>> exchange(std::span<const storage::BucketDraw> draws,
                                                        std::int64_t now_us) override {
        if (table_.fail_next > 0) {
            --table_.fail_next;
            return errors::unavailable("database down", 5);
        }
        table_.calls.emplace_back(draws.begin(), draws.end());
        std::vector<storage::SharedBucket> out;
        for (const auto& d : draws) {
            auto [it, fresh] = table_.tat.try_emplace({d.limit_class, d.key}, now_us);
            it->second = std::max(it->second, now_us) + d.consumed_us;
            out.push_back({d.limit_class, d.key, it->second});
        }
        return out;
    }
    Result<std::int64_t> prune(std::int64_t, int) override { return std::int64_t{0}; }
    Result<storage::ExactDraw> draw(int cls, std::string_view key, std::int64_t cost_us,
                                    std::int64_t burst_us, std::int64_t now_us) override {
        if (table_.fail_next > 0) {
            --table_.fail_next;
            return errors::unavailable("database down", 5);
        }
        auto [it, fresh] = table_.tat.try_emplace({cls, std::string(key)}, now_us);
        const std::int64_t next = std::max(it->second, now_us) + cost_us;
        if (next - now_us > burst_us) return storage::ExactDraw{false, it->second};
        it->second = next;
        return storage::ExactDraw{true, next};
    }
    Result<void> put_back(int cls, std::string_view key, std::int64_t amount_us,
                          std::int64_t now_us) override {
        auto it = table_.tat.find({cls, std::string(key)});
        if (it != table_.tat.end()) it->second = std::max(now_us, it->second - amount_us);
        return {};
    }

private:
    SharedTable& table_;
};

struct SharedStoreTest : ::testing::Test {
    std::unique_ptr<SharedRateLimitStore> make_store() {
        return std::make_unique<SharedRateLimitStore>(
            std::make_unique<TableExchange>(table), std::make_unique<TableExchange>(table), clock);
    }
    // Draws from the per-IP class (decided locally, exchanged in the background) by default.
    int drain(SharedRateLimitStore& store, int attempts, LimitClass cls = LimitClass::kClientIp) {
        int granted = 0;
        for (int i = 0; i < attempts; ++i) {
            if (store.take(cls, "@a:x", bucket, 1, clock.now_ms()).granted) {
                ++granted;
            }
        }
        return granted;
    }
    SharedTable table;
    ManualClock clock{kStart};
    BucketConfig bucket{0.01, 5};  // 5 at once, then one per 100 s
};

TEST_F(SharedStoreTest, TwoInstancesSpendOneBudgetOnceTheyHaveExchanged) {
    auto a = make_store();
    auto b = make_store();
    EXPECT_EQ(drain(*a, 3), 3);
    ASSERT_TRUE(a->exchange_once());
    // b has not drawn from this bucket yet, so it does not know a's draws: its first draw is
    // granted from its own (full) view, and its exchange brings a's three in.
    EXPECT_EQ(drain(*b, 1), 1);
    ASSERT_TRUE(b->exchange_once());
    // 4 of 5 spent: one more in all, wherever it is asked.
    EXPECT_EQ(drain(*b, 3), 1);
    ASSERT_TRUE(b->exchange_once());
    ASSERT_TRUE(a->exchange_once());  // a has nothing pending: its view stays at 3 drawn...
    EXPECT_EQ(drain(*a, 1), 1);       // ...which is the documented slack of one interval
    ASSERT_TRUE(a->exchange_once());
    EXPECT_EQ(drain(*a, 5), 0);
    EXPECT_EQ(drain(*b, 5), 0);
}

TEST_F(SharedStoreTest, DrawsSurviveAFailedExchange) {
    auto a = make_store();
    EXPECT_EQ(drain(*a, 2), 2);
    table.fail_next = 1;
    EXPECT_FALSE(a->exchange_once());
    EXPECT_EQ(drain(*a, 1), 1);
    ASSERT_TRUE(a->exchange_once());
    ASSERT_EQ(table.calls.size(), 1u);
    ASSERT_EQ(table.calls[0].size(), 1u);
    // Three tokens at 100 s each.
    EXPECT_EQ(table.calls[0][0].consumed_us, 3 * 100'000'000);
    EXPECT_EQ(table.tat.begin()->second, kStart * 1000 + 3 * 100'000'000);
}

TEST_F(SharedStoreTest, GivenBackTokensReturnToTheSharedBucket) {
    auto a = make_store();
    EXPECT_EQ(drain(*a, 2), 2);
    a->give_back(LimitClass::kClientIp, "@a:x", bucket, 1, true, clock.now_ms());
    ASSERT_TRUE(a->exchange_once());
    EXPECT_EQ(table.tat.begin()->second, kStart * 1000 + 100'000'000);
}

TEST_F(SharedStoreTest, OtherInstancesDrawsRaiseTheLocalBucket) {
    auto a = make_store();
    auto b = make_store();
    EXPECT_EQ(drain(*a, 1), 1);
    ASSERT_TRUE(a->exchange_once());
    // b spends 4 elsewhere (straight into the table, as other instances would).
    table.tat[{static_cast<int>(LimitClass::kClientIp), "@a:x"}] += 3 * 100'000'000;
    EXPECT_EQ(drain(*a, 1), 1);
    ASSERT_TRUE(a->exchange_once());  // learns the table: 5 of 5 spent
    EXPECT_EQ(drain(*a, 1), 0);
    // The budget refills with time as usual.
    clock.advance_ms(100'000);
    EXPECT_EQ(drain(*a, 2), 1);
}

// Logins, failed logins, registrations and refreshes are decided on the shared bucket itself:
// alternating between instances, without any exchange, the budget is exactly one burst.
TEST_F(SharedStoreTest, ExactClassesSpendExactlyOneBudgetWithoutExchanges) {
    auto a = make_store();
    auto b = make_store();
    for (LimitClass cls : {LimitClass::kFailedLogin, LimitClass::kLogin, LimitClass::kRegistration,
                           LimitClass::kRefresh, LimitClass::kTokenValidity}) {
        EXPECT_TRUE(a->decides_remotely(cls));
        int granted = 0;
        for (int i = 0; i < 6; ++i) {
            granted += drain(*a, 1, cls);
            granted += drain(*b, 1, cls);
        }
        EXPECT_EQ(granted, 5) << limit_class_name(cls);
    }
    EXPECT_FALSE(a->decides_remotely(LimitClass::kClientIp));
    // A lockout starts once (the draw that leaves less than one token), and a refusal says when
    // to come back: the next token is 100 s away.
    table.tat.clear();
    int lockouts = 0;
    DrawResult last;
    for (int i = 0; i < 6; ++i) {
        last = a->take(LimitClass::kFailedLogin, "@a:x", bucket, 1, clock.now_ms());
        lockouts += last.exhausted_now ? 1 : 0;
    }
    EXPECT_EQ(lockouts, 1);
    EXPECT_FALSE(last.granted);
    EXPECT_EQ(last.retry_after_ms, 100'000);
    // A token given back can be drawn again, on the other instance too.
    a->give_back(LimitClass::kFailedLogin, "@a:x", bucket, 1, true, clock.now_ms());
    EXPECT_EQ(drain(*b, 2, LimitClass::kFailedLogin), 1);
}

// When the shared buckets cannot be reached, an exact draw is decided locally: never blocked,
// never failed because of the database.
TEST_F(SharedStoreTest, ExactDrawsFallBackToLocalBucketsWhenTheDatabaseIsDown) {
    auto a = make_store();
    table.fail_next = 100;
    EXPECT_EQ(drain(*a, 7, LimitClass::kLogin), 5);
}

}  // namespace
}  // namespace myelin::service
