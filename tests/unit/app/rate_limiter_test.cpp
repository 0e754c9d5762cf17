// Token buckets with a manual clock (burst, refill, retry_after_ms, lockout reporting, memory
// bound), the X-Forwarded-For rules, exemptions, and the on/off switch.

#include "myelin/service/rate_limiter.hpp"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace myelin::service {
namespace {

constexpr std::int64_t kStart = 1'700'000'000'000;

RateLimitsConfig tiny_config() {
    RateLimitsConfig c;
    c.enabled = true;
    c.client_ip = {0.5, 2.0};  // one token every 2 s, two at most
    c.login = {1.0, 3.0};
    c.failed_login = {0.1, 3.0};  // one token every 10 s
    c.registration = {1.0, 1.0};
    c.refresh = {1.0, 2.0};
    c.token_validity = {1.0, 1.0};
    return c;
}

int retry_after_ms(const Error& e) {
    auto it = e.extra.find("retry_after_ms");
    return it == e.extra.end() ? -1 : static_cast<int>(it->value().as_int64());
}

class RateLimiterTest : public ::testing::Test {
protected:
    ManualClock clock_{kStart};
    InMemoryRateLimitStore store_;
    RateLimitsConfig config_ = tiny_config();
};

TEST_F(RateLimiterTest, BurstThenRefusedWithTimeUntilNextToken) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    EXPECT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    EXPECT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    auto refused = limiter.check(LimitClass::kClientIp, "10.0.0.1");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().status, 429);
    EXPECT_EQ(refused.error().errcode, "M_LIMIT_EXCEEDED");
    EXPECT_EQ(retry_after_ms(refused.error()), 2000);
    EXPECT_EQ(refused.error().retry_after_s, 2);

    // A refusal takes nothing: the wait only shrinks with time.
    clock_.advance_ms(1500);
    auto still = limiter.check(LimitClass::kClientIp, "10.0.0.1");
    ASSERT_FALSE(still);
    EXPECT_EQ(retry_after_ms(still.error()), 500);
    EXPECT_EQ(still.error().retry_after_s, 1);
    clock_.advance_ms(500);
    EXPECT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    EXPECT_FALSE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
}

TEST_F(RateLimiterTest, RefillIsCappedAtTheBurst) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    clock_.advance_ms(3'600'000);  // an hour idle is still only a burst of two
    EXPECT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    EXPECT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    EXPECT_FALSE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
}

TEST_F(RateLimiterTest, KeysAndClassesHaveSeparateBuckets) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    ASSERT_TRUE(limiter.check(LimitClass::kRegistration, "10.0.0.1"));
    EXPECT_FALSE(limiter.check(LimitClass::kRegistration, "10.0.0.1"));
    EXPECT_TRUE(limiter.check(LimitClass::kRegistration, "10.0.0.2"));
    EXPECT_TRUE(limiter.check(LimitClass::kTokenValidity, "10.0.0.1"));  // same key, other class
}

TEST_F(RateLimiterTest, DisabledAllowsEverything) {
    config_.enabled = false;
    RateLimiter limiter(config_, "localhost", store_, clock_);
    for (int i = 0; i < 100; ++i) {
        ASSERT_TRUE(limiter.check(LimitClass::kRegistration, "10.0.0.1"));
        auto ticket = limiter.reserve_failed_login("@alice:localhost");
        ASSERT_TRUE(ticket);
        EXPECT_FALSE(ticket->reserved);
    }
    EXPECT_EQ(store_.size(), 0U);
}

TEST_F(RateLimiterTest, RefusalsAreCountedPerClass) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    auto& counter = metrics::counter("myelin_rate_limited_total", "", {{"class", "registration"}});
    const auto before = counter.value();
    ASSERT_TRUE(limiter.check(LimitClass::kRegistration, "10.9.9.9"));
    ASSERT_FALSE(limiter.check(LimitClass::kRegistration, "10.9.9.9"));
    ASSERT_FALSE(limiter.check(LimitClass::kRegistration, "10.9.9.9"));
    EXPECT_EQ(counter.value(), before + 2);
}

TEST_F(RateLimiterTest, FailedLoginsAreLimitedPerAccountAndReportTheLockoutOnce) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    const std::string user = "@nobody:localhost";  // need not exist: the key is the name
    auto a = limiter.reserve_failed_login(user);
    auto b = limiter.reserve_failed_login(user);
    auto c = limiter.reserve_failed_login(user);
    ASSERT_TRUE(a && b && c);
    EXPECT_FALSE(a->exhausted_now);
    EXPECT_FALSE(b->exhausted_now);
    EXPECT_TRUE(c->exhausted_now);  // the third guess spends the budget
    auto refused = limiter.reserve_failed_login(user);
    ASSERT_FALSE(refused);
    EXPECT_EQ(retry_after_ms(refused.error()), 10'000);
    EXPECT_TRUE(limiter.reserve_failed_login("@other:localhost"));  // per account

    // One token back after 10 s: one more guess, but the same lockout (no second report).
    clock_.advance_ms(10'000);
    auto d = limiter.reserve_failed_login(user);
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->exhausted_now);
    EXPECT_FALSE(limiter.reserve_failed_login(user));

    // Once the budget has refilled completely, a new lockout is reported again.
    clock_.advance_ms(30'000);
    for (int i = 0; i < 2; ++i) {
        auto t = limiter.reserve_failed_login(user);
        ASSERT_TRUE(t);
        EXPECT_FALSE(t->exhausted_now);
    }
    auto last = limiter.reserve_failed_login(user);
    ASSERT_TRUE(last);
    EXPECT_TRUE(last->exhausted_now);
}

TEST_F(RateLimiterTest, SuccessfulLoginsGiveTheirReservationBack) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    const std::string user = "@alice:localhost";
    for (int i = 0; i < 20; ++i) {
        auto t = limiter.reserve_failed_login(user);
        ASSERT_TRUE(t) << "attempt " << i;
        limiter.release_failed_login(user, *t);
    }
    // The last-token reservation that was released does not hide the next real lockout.
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(limiter.reserve_failed_login(user));
    auto t = limiter.reserve_failed_login(user);
    ASSERT_TRUE(t);
    limiter.release_failed_login(user, *t);
    auto again = limiter.reserve_failed_login(user);
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->exhausted_now);
}

TEST_F(RateLimiterTest, ConcurrentDrawsNeverExceedTheBudget) {
    config_.client_ip = {0.001, 50.0};
    RateLimiter limiter(config_, "localhost", store_, clock_);
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 100; ++i) {
                if (limiter.check(LimitClass::kClientIp, "10.0.0.1")) ++granted;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(granted.load(), 50);
}

TEST_F(RateLimiterTest, MemoryIsBoundedWithoutFreeingAnAttackedBucket) {
    InMemoryRateLimitStore small(1024);
    RateLimiter limiter(config_, "localhost", small, clock_);
    ASSERT_TRUE(limiter.check(LimitClass::kClientIp, "victim"));
    ASSERT_TRUE(limiter.check(LimitClass::kClientIp, "victim"));
    // A flood of distinct keys (each bucket one token down) must not evict the drained one.
    for (int i = 0; i < 20'000; ++i) {
        ASSERT_TRUE(limiter.check(LimitClass::kClientIp, "key-" + std::to_string(i)));
    }
    EXPECT_LE(small.size(), 1024U);
    EXPECT_FALSE(limiter.check(LimitClass::kClientIp, "victim"));
    // Once everything has refilled, idle buckets go first and nothing is lost.
    clock_.advance_ms(10'000);
    for (int i = 0; i < 5'000; ++i) {
        ASSERT_TRUE(limiter.check(LimitClass::kClientIp, "later-" + std::to_string(i)));
    }
    EXPECT_LE(small.size(), 1024U);
}

TEST_F(RateLimiterTest, ExemptUsersAreResolvedLikeLogins) {
    config_.exempt_users = {"@Bot:localhost", "@remote:elsewhere"};
    RateLimiter limiter(config_, "localhost", store_, clock_);
    EXPECT_TRUE(limiter.has_exemptions());
    EXPECT_TRUE(limiter.is_exempt("@bot:localhost"));
    EXPECT_FALSE(limiter.is_exempt("@alice:localhost"));
    EXPECT_TRUE(limiter.is_exempt_login("bot"));
    EXPECT_TRUE(limiter.is_exempt_login("BOT"));
    EXPECT_TRUE(limiter.is_exempt_login("@bot:localhost"));
    EXPECT_FALSE(limiter.is_exempt_login("@bot:elsewhere"));
    EXPECT_FALSE(limiter.is_exempt_login("alice"));
    EXPECT_FALSE(limiter.is_exempt_login(""));
    // The failed-login budget applies to them like to anyone: an exemption must not open a
    // bot's password to unlimited guessing.
    const int burst = static_cast<int>(config_.failed_login.burst);
    for (int i = 0; i < burst; ++i) {
        auto t = limiter.reserve_failed_login("@bot:localhost");
        ASSERT_TRUE(t);
        EXPECT_TRUE(t->reserved);
    }
    auto refused = limiter.reserve_failed_login("@bot:localhost");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().status, 429);
}

TEST_F(RateLimiterTest, GiveBackReturnsADrawnToken) {
    RateLimiter limiter(config_, "localhost", store_, clock_);
    ASSERT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    ASSERT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    limiter.give_back(LimitClass::kClientIp, "10.0.0.1");
    EXPECT_TRUE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
    EXPECT_FALSE(limiter.check(LimitClass::kClientIp, "10.0.0.1"));
}

http::Request request_from(std::string peer, std::string forwarded_for = "") {
    http::Request r;
    r.remote_ip = std::move(peer);
    r.forwarded_for = std::move(forwarded_for);
    return r;
}

TEST(ClientIp, PeerAddressWithoutTrustedProxies) {
    TrustedProxies none;
    EXPECT_EQ(client_ip(request_from("10.0.0.1"), none), "10.0.0.1");
    // Spoofing: an untrusted peer's header is ignored entirely.
    EXPECT_EQ(client_ip(request_from("10.0.0.1", "1.2.3.4"), none), "10.0.0.1");
    EXPECT_EQ(client_ip(request_from("::ffff:10.0.0.1"), none), "10.0.0.1");
    TrustedProxies other({"192.168.0.1"});
    EXPECT_EQ(client_ip(request_from("10.0.0.1", "1.2.3.4"), other), "10.0.0.1");
}

TEST(ClientIp, RightMostUntrustedAddressBehindTrustedProxies) {
    TrustedProxies proxies({"127.0.0.1", "192.168.0.2"});
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "203.0.113.7"), proxies), "203.0.113.7");
    // The client wrote "6.6.6.6" itself; our proxy appended what it saw.
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "6.6.6.6, 203.0.113.7"), proxies), "203.0.113.7");
    // Two trusted hops: skip the inner proxy's entry.
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "6.6.6.6,203.0.113.7, 192.168.0.2"), proxies),
              "203.0.113.7");
    // Only trusted hops: the left-most one.
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "192.168.0.2"), proxies), "192.168.0.2");
    // Garbage where the client should be: believe only the hop that reported it.
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "1.1.1.1, not-an-ip"), proxies), "127.0.0.1");
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "garbage, 192.168.0.2"), proxies), "192.168.0.2");
    // Ports, brackets and IPv4-mapped forms are normalised.
    EXPECT_EQ(client_ip(request_from("::ffff:127.0.0.1", "203.0.113.7:4711"), proxies),
              "203.0.113.7");
    EXPECT_EQ(client_ip(request_from("127.0.0.1", "[2001:db8::1]:443"), proxies), "2001:db8::1");
    // No header: the proxy itself.
    EXPECT_EQ(client_ip(request_from("127.0.0.1"), proxies), "127.0.0.1");
}

TEST(ClientIp, CidrRangesOfTrustedProxies) {
    TrustedProxies proxies({"10.0.0.0/8", "fd00::/8", "192.168.1.128/25", "junk/8", "1.2.3.4/33"});
    EXPECT_TRUE(proxies.contains("10.200.3.4"));
    EXPECT_TRUE(proxies.contains("fd12:3456::1"));
    EXPECT_TRUE(proxies.contains("192.168.1.200"));
    EXPECT_FALSE(proxies.contains("192.168.1.100"));  // below the /25
    EXPECT_FALSE(proxies.contains("11.0.0.1"));
    EXPECT_FALSE(proxies.contains("fe80::1"));
    EXPECT_FALSE(proxies.contains("1.2.3.4"));  // a /33 is no range
    // A container network's proxy passes on what it saw.
    EXPECT_EQ(client_ip(request_from("::ffff:10.1.2.3", "6.6.6.6, 203.0.113.7"), proxies),
              "203.0.113.7");
    TrustedProxies everything({"0.0.0.0/0"});
    EXPECT_TRUE(everything.contains("203.0.113.7"));
    EXPECT_FALSE(everything.contains("::1"));
}

TEST(ClientIp, Ipv6BucketsArePerSlash64) {
    EXPECT_EQ(ip_bucket_key("203.0.113.7"), "203.0.113.7");
    EXPECT_EQ(ip_bucket_key("2001:db8:1:2:aaaa::1"), ip_bucket_key("2001:db8:1:2:bbbb::9"));
    EXPECT_NE(ip_bucket_key("2001:db8:1:2::1"), ip_bucket_key("2001:db8:1:3::1"));
    EXPECT_EQ(ip_bucket_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
}

TEST(LoginBodyUser, IdentifierOrLegacyUser) {
    EXPECT_EQ(login_body_user(R"({"identifier":{"type":"m.id.user","user":"bot"}})"), "bot");
    EXPECT_EQ(login_body_user(R"({"user":"@bot:localhost"})"), "@bot:localhost");
    EXPECT_EQ(login_body_user(R"({"identifier":{"type":"m.id.thirdparty","medium":"email"}})"), "");
    EXPECT_EQ(login_body_user("not json"), "");
    EXPECT_EQ(login_body_user(R"({"user":5})"), "");
}

}  // namespace
}  // namespace myelin::service
