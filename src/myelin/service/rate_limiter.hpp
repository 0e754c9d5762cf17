#pragma once

// Rate limiting: token buckets keyed by (class, key) — per client IP, per account for failed
// logins, per device for refreshes — configured by [rate_limits]. The dispatcher, the account
// service (login) and the session service (refresh) ask a RateLimiter; the RateLimiter keeps no
// bucket itself but asks a RateLimitStore, so that several server instances can later share one
// budget (issue #5; see RateLimitStore). Today's store is in memory, sharded and bounded.
// Thread-safety: every function and method here is safe to call concurrently from any thread
// (network threads, the storage writer); none blocks beyond a short shard lock.

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/core/error.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/http/request.hpp"

namespace myelin::service {

namespace detail {
// Lets string-keyed maps and sets be searched with a string_view, without an allocation.
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};
using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;
}  // namespace detail

// The budgets of [rate_limits], one bucket family each.
enum class LimitClass : std::uint8_t {
    kClientIp,       // every request, per client IP
    kLogin,          // POST /login, per client IP
    kFailedLogin,    // failed logins, per account (named by the login, existing or not)
    kRegistration,   // POST /register, per client IP
    kRefresh,        // both refresh endpoints, per device
    kTokenValidity,  // registration-token validity checks, per client IP
};
inline constexpr std::size_t kLimitClassCount = 6;

// "client_ip", "login", ... (the config key stem and the metrics label).
std::string_view limit_class_name(LimitClass cls);

// What one draw from a bucket did.
struct DrawResult {
    bool granted = false;
    // Refused: milliseconds until the bucket holds the tokens asked for (>= 1). Granted: 0.
    std::int64_t retry_after_ms = 0;
    // Granted and the draw left less than one token, for the first time since the bucket was
    // last full: the start of a lockout (reported once, however long the attack goes on).
    bool exhausted_now = false;
};

// Where buckets live. A bucket is the GCRA form of a token bucket: one "theoretical arrival
// time" (TAT) per (class, key). It is full when TAT <= now; drawing `cost` tokens moves TAT to
// max(TAT, now) + cost / per_second, and is refused when that would put TAT more than
// burst / per_second past now. A bucket that is full holds no information, so a store may drop
// it at any time.
//
// A shared store (issue #5, PostgreSQL) must make each draw one atomic read-modify-write on the
// shared row, e.g.
//   INSERT INTO rate_limit_buckets (class, key, tat_us, exhausted) VALUES (...)
//   ON CONFLICT (class, key) DO UPDATE SET tat_us = greatest(tat_us, $now) + $cost_us
//     WHERE greatest(tat_us, $now) + $cost_us - $now <= $burst_us RETURNING tat_us, ...
// so that N instances draw from ONE budget: an attacker spreading requests over the instances
// gets the configured budget, not N times it. To avoid a round trip per request on the
// per-IP class, an instance may lease a small slice of a shared bucket (draw k tokens at once
// from the shared row, spend them locally, give back what is left when the lease expires): the
// sum of all leases never exceeds the shared budget, so the N-times bound still holds. `now`
// comes from the caller; a shared store should clamp it to never move a row's TAT backwards
// (instances' clocks differ by a little). The in-memory store below is the single-instance case.
class RateLimitStore {
public:
    virtual ~RateLimitStore() = default;

    // Takes `cost` tokens from the bucket (cls, key) if it holds that many at `now_ms`; takes
    // nothing when refused. A bucket seen for the first time is full. Never blocks for long.
    virtual DrawResult take(LimitClass cls, std::string_view key, const BucketConfig& bucket,
                            double cost, std::int64_t now_ms) = 0;

    // Puts `amount` tokens back (capped at the burst): undoes a reservation that turned out not
    // to count. `end_lockout` also forgets that a lockout was reported (the reservation that
    // reported it is being undone).
    virtual void give_back(LimitClass cls, std::string_view key, const BucketConfig& bucket,
                           double amount, bool end_lockout, std::int64_t now_ms) = 0;

    // Whether draws of `cls` are decided elsewhere (a shared store's exact classes): then a
    // caller on a network thread must use take_async, since take() may wait for the database.
    virtual bool decides_remotely(LimitClass /*cls*/) const { return false; }

    // take(), with the result handed to `done` (on any thread, possibly before returning).
    using DrawCallback = std::function<void(DrawResult)>;
    virtual void take_async(LimitClass cls, std::string key, const BucketConfig& bucket,
                            double cost, std::int64_t now_ms, DrawCallback done) {
        done(take(cls, key, bucket, cost, now_ms));
    }
};

// The single-instance store: buckets in memory, split into shards by hash of the key, each
// behind its own mutex (held for a hash lookup and a few arithmetic operations). Memory is
// bounded: when a shard reaches its share of `max_buckets`, full (idle) buckets are dropped,
// which loses nothing; if that is not enough (a flood of distinct keys), the buckets closest to
// full are dropped down to half the share, which forgets the least.
class InMemoryRateLimitStore final : public RateLimitStore {
public:
    explicit InMemoryRateLimitStore(std::size_t max_buckets = 256 * 1024);

    DrawResult take(LimitClass cls, std::string_view key, const BucketConfig& bucket, double cost,
                    std::int64_t now_ms) override;
    void give_back(LimitClass cls, std::string_view key, const BucketConfig& bucket, double amount,
                   bool end_lockout, std::int64_t now_ms) override;

    // Buckets held right now (for tests).
    std::size_t size() const;

    // Moves the bucket's TAT forward to `tat_us` (never back), creating the bucket if it is
    // absent and `tat_us` is in the future at `now_ms`: folds in draws made elsewhere (another
    // instance's, through a shared store).
    void raise_tat(LimitClass cls, std::string_view key, std::int64_t tat_us, std::int64_t now_ms);

private:
    struct Bucket {
        std::int64_t tat_us = 0;  // theoretical arrival time, µs since the epoch
        bool exhausted = false;   // a lockout was reported and the bucket has not been full since
    };
    using Map = std::unordered_map<std::string, Bucket, detail::StringHash, std::equal_to<>>;
    struct Shard {
        mutable std::mutex mu;
        std::array<Map, kLimitClassCount> maps;  // guarded by mu
        std::size_t count = 0;                   // buckets in all maps; guarded by mu
    };
    static constexpr std::size_t kShards = 64;

    Shard& shard_for(LimitClass cls, std::string_view key);
    // Makes room for one more bucket in `shard` (its mutex held).
    void make_room(Shard& shard, std::int64_t now_us);

    const std::size_t per_shard_;
    std::array<Shard, kShards> shards_;
};

// The proxies whose X-Forwarded-For is believed: IP addresses, compared after normalisation
// (IPv4-mapped IPv6 is IPv4), and CIDR ranges ("10.0.0.0/8", "fd00::/8"; a container network's
// proxies). Read-only once built.
class TrustedProxies {
public:
    TrustedProxies() = default;
    // Entries that are neither are ignored (the config loader refuses them before this).
    explicit TrustedProxies(const std::vector<std::string>& entries);
    // Whether `normalized_ip` (see normalize_ip) is one of the addresses or inside a range.
    bool contains(std::string_view normalized_ip) const;
    bool empty() const { return addresses_.empty() && ranges_.empty(); }

private:
    struct Range {
        std::array<unsigned char, 16> bytes{};  // IPv4 in the first 4 bytes
        unsigned prefix = 0;                    // bits
        bool v4 = false;
    };
    detail::StringSet addresses_;
    std::vector<Range> ranges_;
};

// `ip` in canonical text form ("::ffff:1.2.3.4" → "1.2.3.4", IPv6 compressed), or "" when it is
// not an IP address (an optional ":port" or "[v6]:port" is stripped first).
std::string normalize_ip(std::string_view ip);

// The address a request comes from: the peer (request.remote_ip), unless the peer is a trusted
// proxy and the request has X-Forwarded-For; then the right-most address in that header that
// is not itself a trusted proxy (the left-most if all are). Entries to the left of it are
// written by the client and never believed. An entry that is not an IP address ends the walk
// at the proxy that reported it. Never fails.
std::string client_ip(const http::Request& request, const TrustedProxies& trusted_proxies);

// The bucket key for a client address: IPv4 as is, IPv6 by its /64 (one subscriber usually
// holds a whole /64, so per-address buckets would give it 2^64 budgets).
std::string ip_bucket_key(std::string_view normalized_ip);

// The user named by a POST /login body (identifier {type: m.id.user, user} or the legacy
// `user`), unresolved, or "" when there is none. Parses JSON; pure.
std::string login_body_user(std::string_view body);

// The policy: which classes apply, who is exempt, and the 429 answers. Holds a reference to the
// store and the clock, which must outlive it.
class RateLimiter {
public:
    RateLimiter(const RateLimitsConfig& config, std::string server_name, RateLimitStore& store,
                const Clock& clock);

    // False when [rate_limits] enabled = false: then every check passes.
    bool enabled() const { return config_.enabled; }

    // Whether exempt_users lists anyone (lets callers skip work that only finds exemptions).
    bool has_exemptions() const { return !exempt_.empty(); }

    // Whether the store decides draws of `cls` elsewhere (see RateLimitStore): callers on
    // network threads must then use check_async.
    bool decides_remotely(LimitClass cls) const { return store_.decides_remotely(cls); }

    // Whether `user_id` (a full MXID) is in exempt_users.
    bool is_exempt(std::string_view user_id) const;

    // Whether what a client typed at login ("alice", "@alice:server") resolves to an exempt
    // user on this server.
    bool is_exempt_login(std::string_view typed_user) const;

    // client_ip() with the configured trusted proxies.
    std::string client_ip(const http::Request& request) const;

    // Draws one token from (cls, key). Success, or 429 M_LIMIT_EXCEEDED with retry_after_ms
    // and Retry-After (counted in myelin_rate_limited_total{class}). Always succeeds when
    // disabled. `key` is the IP bucket key, the user ID or "user|device" as the class demands.
    [[nodiscard]] Result<void> check(LimitClass cls, std::string_view key);

    // check() for callers on network threads: when the store decides `cls` remotely (several
    // instances sharing one budget), the draw runs off this thread and the coroutine resumes
    // on its executor with the answer; otherwise it is check() itself.
    boost::asio::awaitable<Result<void>> check_async(LimitClass cls, std::string key);

    // Puts back a token drawn by check() that turned out not to count (an exempt user found
    // only after the draw). No-op when disabled.
    void give_back(LimitClass cls, std::string_view key);

    // A failed-login reservation (see reserve_failed_login).
    struct FailedLoginTicket {
        bool reserved = false;       // a token was taken (false: disabled or exempt)
        bool exhausted_now = false;  // taking it started a lockout
    };

    // Before the password is hashed: takes one failed-login token from the account `user_id`
    // (a full MXID, existing or not). 429 when the account's budget is spent. Taking the token
    // up front (and giving it back on success, see release_failed_login) means concurrent guesses
    // can never exceed the budget, as "check, hash, then draw" would let them. Exempt users
    // are limited here too (their passwords must not be open to guessing); a disabled limiter
    // gives an empty ticket.
    [[nodiscard]] Result<FailedLoginTicket> reserve_failed_login(std::string_view user_id);

    // reserve_failed_login() for coroutines on network threads (see check_async).
    boost::asio::awaitable<Result<FailedLoginTicket>> reserve_failed_login_async(
        std::string user_id);

    // The attempt did not turn out to be a wrong guess (it succeeded, or failed before the
    // password was checked: storage or hashing overload): the reserved token goes back, and a
    // lockout its reservation reported is forgotten.
    void release_failed_login(std::string_view user_id, const FailedLoginTicket& ticket);

private:
    const BucketConfig& bucket(LimitClass cls) const;
    // The draw from the store, awaited (see check_async).
    boost::asio::awaitable<DrawResult> take_awaited(LimitClass cls, std::string key);
    Error refused(LimitClass cls, std::int64_t retry_after_ms);

    RateLimitsConfig config_;
    std::string server_name_;
    RateLimitStore& store_;
    const Clock& clock_;
    TrustedProxies trusted_;
    detail::StringSet exempt_;
    std::array<metrics::Counter*, kLimitClassCount> limited_{};
};

}  // namespace myelin::service
