// The session change follower with a scripted feed: pushed revocations and generation advances
// reach the token cache, changes that arrive while the cache warms are applied again after it
// (warming may have written older state over them), a gap clears the cache, and a pushed
// advance makes a concurrent load from storage (which may have read the session before the
// change) drop its insert.

#include "myelin/service/session_change_follower.hpp"

#include <gtest/gtest.h>

namespace myelin::service {
namespace {

// A feed whose deliveries the test makes by hand.
class ScriptedFeed final : public storage::SessionFeed {
public:
    Result<void> start(ChangeHandler on_change, GapHandler on_gap) override {
        on_change_ = std::move(on_change);
        on_gap_ = std::move(on_gap);
        return {};
    }
    void stop() override {}
    void deliver(const storage::SessionChange& c) { on_change_(c); }
    void gap() { on_gap_(); }

private:
    ChangeHandler on_change_;
    GapHandler on_gap_;
};

storage::TokenHash hash_of(std::uint8_t fill) {
    storage::TokenHash h{};
    h.fill(fill);
    return h;
}

storage::SessionRecord session_record(std::int64_t id, std::int64_t current, std::int64_t used) {
    storage::SessionRecord r;
    r.session_id = id;
    r.user_id = "@a:x";
    r.device_id = "D";
    r.refreshable = true;
    r.current_generation = current;
    r.used_generation = used;
    return r;
}

// Caches a token of `generation` for the session as a load from storage would (creating the
// cached session from `record` if needed).
void cache_token(auth::TokenCache& cache, std::uint8_t fill, const storage::SessionRecord& record,
                 std::int64_t generation, std::optional<std::uint64_t> epoch = std::nullopt) {
    auth::CachedAccessToken t;
    t.session = cache.session_for(record);
    t.generation = generation;
    cache.insert(hash_of(fill), std::move(t), epoch);
}

storage::SessionChange advanced(std::int64_t id, std::int64_t current, std::int64_t used) {
    storage::SessionChange c;
    c.kind = storage::SessionChange::Kind::kAdvanced;
    c.session_id = id;
    c.current_generation = current;
    c.used_generation = used;
    return c;
}

storage::SessionChange revoked(std::int64_t id) {
    storage::SessionChange c;
    c.kind = storage::SessionChange::Kind::kRevoked;
    c.session_id = id;
    c.reason = storage::RevokeReason::kLogout;
    return c;
}

struct FollowerTest : ::testing::Test {
    void SetUp() override {
        auto f = std::make_unique<ScriptedFeed>();
        feed = f.get();
        follower = std::make_unique<SessionChangeFollower>(std::move(f), cache);
        ASSERT_TRUE(follower->start());
    }
    auth::TokenCache cache;
    ScriptedFeed* feed = nullptr;
    std::unique_ptr<SessionChangeFollower> follower;
};

TEST_F(FollowerTest, PushedChangesReachTheCache) {
    follower->warmed();
    cache_token(cache, 1, session_record(10, 1, 0), 0);  // old pair, still usable
    cache_token(cache, 2, session_record(10, 1, 0), 1);  // its successor
    cache_token(cache, 3, session_record(11, 0, 0), 0);
    ASSERT_TRUE(cache.find(hash_of(1)));

    // Another instance saw the successor used: the old access token dies here too.
    feed->deliver(advanced(10, 1, 1));
    EXPECT_FALSE(cache.find(hash_of(1)));
    ASSERT_TRUE(cache.find(hash_of(2)));
    EXPECT_EQ(cache.find(hash_of(2))->session->used_generation.load(), 1);

    feed->deliver(revoked(11));
    EXPECT_FALSE(cache.find(hash_of(3)));
}

TEST_F(FollowerTest, ChangesReceivedWhileWarmingAreAppliedAgainAfterIt) {
    // The change arrives before warming has loaded the session...
    feed->deliver(advanced(10, 1, 1));
    feed->deliver(revoked(11));
    // ...and warming then writes the state it read earlier.
    cache_token(cache, 1, session_record(10, 1, 0), 0);
    cache_token(cache, 3, session_record(11, 0, 0), 0);
    ASSERT_TRUE(cache.find(hash_of(1)));
    follower->warmed();
    EXPECT_FALSE(cache.find(hash_of(1)));
    EXPECT_FALSE(cache.find(hash_of(3)));
    // Changes after warming are applied once, as they come.
    cache_token(cache, 4, session_record(12, 0, 0), 0);
    feed->deliver(revoked(12));
    EXPECT_FALSE(cache.find(hash_of(4)));
}

TEST_F(FollowerTest, AGapClearsTheCache) {
    follower->warmed();
    cache_token(cache, 1, session_record(10, 0, 0), 0);
    cache_token(cache, 2, session_record(11, 0, 0), 0);
    const auto epoch = cache.revocation_epoch();
    feed->gap();
    EXPECT_EQ(cache.token_count(), 0u);
    EXPECT_EQ(cache.session_count(), 0u);
    EXPECT_NE(cache.revocation_epoch(), epoch);
    EXPECT_FALSE(cache.find(hash_of(1)));
}

TEST_F(FollowerTest, APushedAdvanceDropsAConcurrentStaleLoad) {
    follower->warmed();
    // A load from storage starts (remembers the epoch), reads generation 0 as usable...
    const auto observed = cache.revocation_epoch();
    // ...another instance's advance arrives (the session is not cached here yet)...
    feed->deliver(advanced(10, 1, 1));
    // ...and the load's insert must not bring the dead token back.
    cache_token(cache, 1, session_record(10, 0, 0), 0, observed);
    EXPECT_FALSE(cache.find(hash_of(1)));
}

}  // namespace
}  // namespace myelin::service
