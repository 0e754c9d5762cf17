// The token cache's structure: tokens found by hash and sharing their session, revocation and
// generation advances dropping the right tokens, the epoch guard, growth of the indexes, many
// tokens per session, slab records reused only once no reference is left, and lookups racing
// revocations.

#include "myelin/auth/token_cache.hpp"

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace myelin::auth {
namespace {

// A distinct random-looking hash for each n (the cache relies on hashes being random).
storage::TokenHash hash_of(std::uint64_t n) {
    storage::TokenHash h{};
    std::mt19937_64 rng(n * 0x9E3779B97F4A7C15ULL + 1);
    for (std::size_t i = 0; i < h.size(); i += 8) {
        const std::uint64_t v = rng();
        for (std::size_t b = 0; b < 8; ++b) h[i + b] = static_cast<std::uint8_t>(v >> (8 * b));
    }
    return h;
}

storage::SessionRecord record(std::int64_t id, std::string user = "@u:x",
                              std::string device = "DEV") {
    storage::SessionRecord r;
    r.session_id = id;
    r.user_id = std::move(user);
    r.device_id = std::move(device);
    return r;
}

void cache_token(TokenCache& cache, std::uint64_t n, const storage::SessionRecord& r,
                 std::int64_t generation = 0, std::int64_t expires = 0) {
    CachedAccessToken t;
    t.session = cache.session_for(r);
    t.generation = generation;
    t.expires_ts = expires;
    cache.insert(hash_of(n), std::move(t));
}

TEST(TokenCache, FindsTokensAndSharesTheSessionBetweenThem) {
    TokenCache cache;
    auto r = record(7, "@alice:example.org", "ALICEDEV");
    r.is_guest = true;
    r.refreshable = true;
    r.ends_ts = 99;
    r.current_generation = 2;
    r.used_generation = 1;
    cache_token(cache, 1, r, 1, 1000);
    cache_token(cache, 2, r, 2, 2000);
    EXPECT_FALSE(cache.find(hash_of(3)));

    auto a = cache.find(hash_of(1));
    auto b = cache.find(hash_of(2));
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->session.get(), b->session.get());
    EXPECT_EQ(a->generation, 1);
    EXPECT_EQ(a->expires_ts, 1000);
    EXPECT_EQ(b->generation, 2);
    EXPECT_EQ(b->expires_ts, 2000);
    const CachedSession& s = *a->session;
    EXPECT_EQ(s.session_id, 7);
    EXPECT_EQ(s.user_id(), "@alice:example.org");
    EXPECT_EQ(s.device_id, "ALICEDEV");
    EXPECT_TRUE(s.is_guest);
    EXPECT_TRUE(s.refreshable);
    EXPECT_EQ(s.ends_ts, 99);
    EXPECT_EQ(s.current_generation.load(), 2);
    EXPECT_EQ(s.used_generation.load(), 1);
    EXPECT_FALSE(s.revoked());
    EXPECT_EQ(cache.token_count(), 2U);
    EXPECT_EQ(cache.session_count(), 1U);
}

TEST(TokenCache, SessionsOfOneUserShareOneCopyOfTheUserId) {
    TokenCache cache;
    auto a = cache.session_for(record(1, "@bob:example.org", "D1"));
    auto b = cache.session_for(record(2, "@bob:example.org", "D2"));
    auto c = cache.session_for(record(3, "@carol:example.org", "D3"));
    EXPECT_EQ(&a->user_id(), &b->user_id());
    EXPECT_NE(&a->user_id(), &c->user_id());
    EXPECT_EQ(c->user_id(), "@carol:example.org");
}

TEST(TokenCache, InsertingACachedTokenAgainUpdatesItInPlace) {
    TokenCache cache;
    auto r = record(1);
    cache_token(cache, 1, r, 0, 100);
    cache_token(cache, 1, r, 3, 300);
    EXPECT_EQ(cache.token_count(), 1U);
    EXPECT_EQ(cache.token_records(), 1U);
    auto t = cache.find(hash_of(1));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->generation, 3);
    EXPECT_EQ(t->expires_ts, 300);
}

TEST(TokenCache, RevocationFlipsEveryTokenOfTheSessionAndDropsThem) {
    TokenCache cache;
    auto r = record(5);
    for (std::uint64_t n = 0; n < 50; ++n) cache_token(cache, n, r);
    cache_token(cache, 1000, record(6));
    auto held = cache.find(hash_of(10));
    ASSERT_TRUE(held);
    const auto epoch = cache.revocation_epoch();

    cache.revoke_session(5, storage::RevokeReason::kLogout);
    EXPECT_TRUE(held->session->revoked());
    EXPECT_EQ(held->session->revoked_reason.load(),
              static_cast<int>(storage::RevokeReason::kLogout));
    EXPECT_GT(cache.revocation_epoch(), epoch);
    for (std::uint64_t n = 0; n < 50; ++n) EXPECT_FALSE(cache.find(hash_of(n))) << n;
    EXPECT_TRUE(cache.find(hash_of(1000)));
    EXPECT_EQ(cache.token_count(), 1U);
    EXPECT_EQ(cache.session_count(), 1U);
    // The held reference still reads the session it was taken for.
    EXPECT_EQ(held->session->session_id, 5);
    EXPECT_EQ(held->session->user_id(), "@u:x");

    // Idempotent, and an unknown session only bumps the epoch.
    cache.apply_logged_revocation(5, storage::RevokeReason::kLogout);
    cache.revoke_session(12345, storage::RevokeReason::kAdmin);
    EXPECT_EQ(cache.session_count(), 1U);
}

TEST(TokenCache, AdvanceDropsTokensOlderThanTheUsedGenerationAmongMany) {
    TokenCache cache;
    auto r = record(9);
    for (std::int64_t g = 0; g < 200; ++g) cache_token(cache, static_cast<std::uint64_t>(g), r, g);
    EXPECT_EQ(cache.token_count(), 200U);

    cache.advance_session(9, 200, 120);
    EXPECT_EQ(cache.token_count(), 80U);
    for (std::int64_t g = 0; g < 200; ++g) {
        EXPECT_EQ(cache.find(hash_of(static_cast<std::uint64_t>(g))).has_value(), g >= 120) << g;
    }
    auto t = cache.find(hash_of(150));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->session->used_generation.load(), 120);
    EXPECT_EQ(t->session->current_generation.load(), 200);
    // Generations never go back.
    cache.advance_session(9, 100, 50);
    EXPECT_EQ(t->session->used_generation.load(), 120);
    EXPECT_EQ(t->session->current_generation.load(), 200);
    // The remaining chain is intact: a revocation drops all of them.
    cache.revoke_session(9, storage::RevokeReason::kLogout);
    EXPECT_EQ(cache.token_count(), 0U);
}

TEST(TokenCache, ALoadThatRacedARevocationOrALoggedAdvanceIsNotInserted) {
    TokenCache cache;
    auto r = record(3);
    auto epoch = cache.revocation_epoch();
    cache.revoke_session(4, storage::RevokeReason::kLogout);  // any revocation
    CachedAccessToken t;
    t.session = cache.session_for(r);
    cache.insert(hash_of(1), t, epoch);
    EXPECT_FALSE(cache.find(hash_of(1)));

    epoch = cache.revocation_epoch();
    cache.apply_logged_advance(3, 1, 1);
    cache.insert(hash_of(2), t, epoch);
    EXPECT_FALSE(cache.find(hash_of(2)));

    epoch = cache.revocation_epoch();
    cache.advance_session(3, 2, 1);  // made by this process: no stale load possible
    EXPECT_EQ(cache.revocation_epoch(), epoch);
    cache.insert(hash_of(3), t, epoch);
    EXPECT_TRUE(cache.find(hash_of(3)));
}

TEST(TokenCache, AWriteOfThisProcessFilesARevokedSessionAgainAndItsTokensFail) {
    TokenCache cache;
    CachedAccessToken t;
    t.session = cache.session_for(record(8));
    cache.revoke_session(8, storage::RevokeReason::kReplaced);
    EXPECT_EQ(cache.session_count(), 0U);
    cache.insert(hash_of(1), t);  // no epoch: data this process just wrote
    auto found = cache.find(hash_of(1));
    ASSERT_TRUE(found);
    EXPECT_TRUE(found->session->revoked());
    EXPECT_EQ(cache.session_count(), 1U);
}

TEST(TokenCache, ClearForgetsEverythingWhileHeldReferencesStayReadable) {
    TokenCache cache;
    for (std::int64_t s = 0; s < 300; ++s) {
        cache_token(cache, static_cast<std::uint64_t>(s),
                    record(s, "@u" + std::to_string(s % 7) + ":x"));
    }
    auto held = cache.find(hash_of(42));
    ASSERT_TRUE(held);
    const auto epoch = cache.revocation_epoch();
    cache.clear();
    EXPECT_GT(cache.revocation_epoch(), epoch);
    EXPECT_EQ(cache.token_count(), 0U);
    EXPECT_EQ(cache.session_count(), 0U);
    for (std::uint64_t n = 0; n < 300; ++n) EXPECT_FALSE(cache.find(hash_of(n)));
    EXPECT_EQ(held->session->session_id, 42);
    EXPECT_EQ(held->session->user_id(), "@u0:x");
    // Usable again afterwards.
    cache_token(cache, 7, record(7));
    EXPECT_TRUE(cache.find(hash_of(7)));
}

TEST(TokenCache, IndexesGrowAndKeepEveryEntryThroughRehashes) {
    TokenCache cache;
    constexpr std::int64_t kSessions = 20000;
    for (std::int64_t s = 0; s < kSessions; ++s) {
        auto r = record(s, "@u" + std::to_string(s / 10) + ":x");
        cache_token(cache, static_cast<std::uint64_t>(2 * s), r);
        cache_token(cache, static_cast<std::uint64_t>(2 * s + 1), r);
    }
    EXPECT_EQ(cache.token_count(), 2U * kSessions);
    EXPECT_EQ(cache.session_count(), static_cast<std::size_t>(kSessions));
    for (std::int64_t s = 0; s < kSessions; ++s) {
        auto t = cache.find(hash_of(static_cast<std::uint64_t>(2 * s + 1)));
        ASSERT_TRUE(t) << s;
        ASSERT_EQ(t->session->session_id, s);
    }
    // Deleting every third session (backward shifts all over the indexes) loses no other.
    for (std::int64_t s = 0; s < kSessions; s += 3) {
        cache.revoke_session(s, storage::RevokeReason::kLogout);
    }
    for (std::int64_t s = 0; s < kSessions; ++s) {
        for (std::uint64_t k = 0; k < 2; ++k) {
            auto t = cache.find(hash_of(static_cast<std::uint64_t>(2 * s) + k));
            ASSERT_EQ(t.has_value(), s % 3 != 0) << s;
            if (t) {
                ASSERT_EQ(t->session->session_id, s);
            }
        }
    }
}

TEST(TokenCache, RecordsAreReusedOnlyOnceNoReferenceIsLeft) {
    TokenCache cache;
    cache_token(cache, 1, record(1, "@a:x", "DA"));
    EXPECT_EQ(cache.session_records(), 1U);
    EXPECT_EQ(cache.token_records(), 1U);
    cache.revoke_session(1, storage::RevokeReason::kLogout);
    // Nothing holds the first session: its records are reused.
    cache_token(cache, 2, record(2, "@b:x", "DB"));
    EXPECT_EQ(cache.session_records(), 1U);
    EXPECT_EQ(cache.token_records(), 1U);
    auto t2 = cache.find(hash_of(2));
    ASSERT_TRUE(t2);
    EXPECT_EQ(t2->session->session_id, 2);
    EXPECT_FALSE(t2->session->revoked());
    EXPECT_EQ(t2->session->user_id(), "@b:x");
    EXPECT_EQ(t2->session->activity_noted_ms.load(), 0);

    // A request still holds session 2 when it is revoked: its record is not reused.
    t2->session->activity_noted_ms.store(5);
    cache.revoke_session(2, storage::RevokeReason::kLogout);
    cache_token(cache, 3, record(3, "@c:x", "DC"));
    EXPECT_EQ(cache.session_records(), 2U);
    EXPECT_EQ(t2->session->session_id, 2);
    EXPECT_EQ(t2->session->user_id(), "@b:x");
    EXPECT_EQ(t2->session->device_id, "DB");
    EXPECT_TRUE(t2->session->revoked());
    // Once it lets go, the record is free again.
    t2.reset();
    cache_token(cache, 4, record(4, "@d:x", "DD"));
    EXPECT_EQ(cache.session_records(), 2U);
    auto t4 = cache.find(hash_of(4));
    ASSERT_TRUE(t4);
    EXPECT_EQ(t4->session->user_id(), "@d:x");
    EXPECT_EQ(t4->session->device_id, "DD");
    EXPECT_EQ(t4->session->activity_noted_ms.load(), 0);
    EXPECT_TRUE(cache.find(hash_of(3)));
}

TEST(TokenCache, ReferencesCopyAndMoveWithoutLeakingOrFreeingEarly) {
    TokenCache cache;
    SessionRef a = cache.session_for(record(1));
    SessionRef b = a;
    SessionRef c = std::move(b);
    EXPECT_FALSE(b);
    b = c;
    a = SessionRef();
    c.reset();
    cache.revoke_session(1, storage::RevokeReason::kLogout);
    EXPECT_EQ(b->session_id, 1);  // b still holds it
    cache.session_for(record(2));
    EXPECT_EQ(cache.session_records(), 2U);
    b.reset();
    cache.revoke_session(2, storage::RevokeReason::kLogout);
    cache.session_for(record(3));
    cache.session_for(record(4));
    EXPECT_EQ(cache.session_records(), 2U);
}

// Lookups on two threads race revocations and re-creations on a third: a lookup either misses
// or returns the session its token was cached for (never a reused record of another one), and a
// session revoked before the lookup began is never returned live.
TEST(TokenCache, ConcurrentLookupsNeverSeeAReusedOrStaleSession) {
    TokenCache cache;
    constexpr std::int64_t kSessions = 64;
    constexpr int kRounds = 300;
    for (std::int64_t s = 0; s < kSessions; ++s) {
        cache_token(cache, static_cast<std::uint64_t>(s),
                    record(s, "@u" + std::to_string(s) + ":x"));
    }
    std::atomic<bool> done{false};
    std::atomic<long> hits{0};
    std::atomic<long> bad{0};
    auto reader = [&] {
        while (!done.load()) {
            for (std::int64_t s = 0; s < kSessions; ++s) {
                auto t = cache.find(hash_of(static_cast<std::uint64_t>(s)));
                if (!t) continue;
                ++hits;
                if (t->session->session_id != s ||
                    t->session->user_id() != "@u" + std::to_string(s) + ":x") {
                    ++bad;
                }
            }
        }
    };
    std::thread r1(reader);
    std::thread r2(reader);
    for (int round = 0; round < kRounds; ++round) {
        for (std::int64_t s = round % 2; s < kSessions; s += 2) {
            cache.revoke_session(s, storage::RevokeReason::kLogout);
            // Revocation is complete when the call returns.
            auto t = cache.find(hash_of(static_cast<std::uint64_t>(s)));
            if (t && !t->session->revoked()) ++bad;
            cache_token(cache, static_cast<std::uint64_t>(s),
                        record(s, "@u" + std::to_string(s) + ":x"));
        }
    }
    done = true;
    r1.join();
    r2.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(hits.load(), 0);
    EXPECT_EQ(cache.token_count(), static_cast<std::size_t>(kSessions));
    EXPECT_LE(cache.session_records(), static_cast<std::size_t>(kSessions) + 64U);
}

}  // namespace
}  // namespace myelin::auth
