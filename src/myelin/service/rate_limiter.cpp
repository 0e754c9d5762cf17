#include "myelin/service/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "myelin/core/log.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/user_ids.hpp"

namespace myelin::service {
namespace {

constexpr std::int64_t kMicrosPerMs = 1000;

// Microseconds one token takes to come back.
double token_us(const BucketConfig& b) { return 1e6 / b.per_second; }

std::int64_t ceil_ms(double micros) {
    auto ms = static_cast<std::int64_t>(std::ceil(micros / static_cast<double>(kMicrosPerMs)));
    return std::max<std::int64_t>(ms, 1);
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::string_view limit_class_name(LimitClass cls) {
    switch (cls) {
        case LimitClass::kClientIp:
            return "client_ip";
        case LimitClass::kLogin:
            return "login";
        case LimitClass::kFailedLogin:
            return "failed_login";
        case LimitClass::kRegistration:
            return "registration";
        case LimitClass::kRefresh:
            return "refresh";
        case LimitClass::kTokenValidity:
            return "token_validity";
    }
    return "unknown";
}

// ---- InMemoryRateLimitStore ----

InMemoryRateLimitStore::InMemoryRateLimitStore(std::size_t max_buckets)
    : per_shard_(std::max<std::size_t>(max_buckets / kShards, 16)) {}

InMemoryRateLimitStore::Shard& InMemoryRateLimitStore::shard_for(LimitClass cls,
                                                                 std::string_view key) {
    const std::size_t h = std::hash<std::string_view>{}(key) ^
                          (static_cast<std::size_t>(cls) * 0x9E3779B97F4A7C15ULL);
    // The map inside the shard hashes the key again; take the high bits here so the two do not
    // correlate.
    return shards_[(h >> 32) % kShards];
}

void InMemoryRateLimitStore::make_room(Shard& shard, std::int64_t now_us) {
    if (shard.count < per_shard_) return;
    // Full buckets say nothing that an absent bucket would not: dropping them loses nothing.
    for (auto& map : shard.maps) {
        for (auto it = map.begin(); it != map.end();) {
            if (it->second.tat_us <= now_us) {
                it = map.erase(it);
                --shard.count;
            } else {
                ++it;
            }
        }
    }
    if (shard.count < per_shard_ - per_shard_ / 4) return;
    // A flood of distinct keys: drop the buckets closest to full (lowest TAT) down to half the
    // share, so this O(n) pass runs at most once per per_shard_/2 new keys.
    std::vector<std::int64_t> tats;
    tats.reserve(shard.count);
    for (const auto& map : shard.maps) {
        for (const auto& entry : map) tats.push_back(entry.second.tat_us);
    }
    const std::size_t drop = shard.count - per_shard_ / 2;
    std::nth_element(tats.begin(), tats.begin() + static_cast<std::ptrdiff_t>(drop - 1),
                     tats.end());
    const std::int64_t cutoff = tats[drop - 1];
    std::size_t dropped = 0;
    for (auto& map : shard.maps) {
        for (auto it = map.begin(); it != map.end() && dropped < drop;) {
            if (it->second.tat_us <= cutoff) {
                it = map.erase(it);
                --shard.count;
                ++dropped;
            } else {
                ++it;
            }
        }
    }
}

DrawResult InMemoryRateLimitStore::take(LimitClass cls, std::string_view key,
                                        const BucketConfig& bucket, double cost,
                                        std::int64_t now_ms) {
    const std::int64_t now_us = now_ms * kMicrosPerMs;
    const double per_token = token_us(bucket);
    const double cost_us = cost * per_token;
    const double burst_us = bucket.burst * per_token;
    DrawResult out;
    Shard& shard = shard_for(cls, key);
    std::lock_guard lock(shard.mu);
    Map& map = shard.maps[static_cast<std::size_t>(cls)];
    auto it = map.find(key);
    if (it == map.end()) {
        // A new bucket is full; if even a full one cannot pay, refuse without storing anything.
        if (cost_us > burst_us) {
            out.retry_after_ms = ceil_ms(cost_us - burst_us);
            return out;
        }
        make_room(shard, now_us);
        it = map.emplace(std::string(key), Bucket{now_us, false}).first;
        ++shard.count;
    }
    Bucket& b = it->second;
    if (b.tat_us <= now_us) b.exhausted = false;  // it has been full since the last lockout
    const double base = static_cast<double>(std::max(b.tat_us, now_us));
    const double new_tat = base + cost_us;
    const double ahead = new_tat - static_cast<double>(now_us);
    if (ahead > burst_us) {
        out.retry_after_ms = ceil_ms(ahead - burst_us);
        return out;
    }
    b.tat_us = static_cast<std::int64_t>(std::llround(new_tat));
    out.granted = true;
    // Less than one token left: ahead > burst - 1 token.
    if (ahead > burst_us - per_token && !b.exhausted) {
        b.exhausted = true;
        out.exhausted_now = true;
    }
    return out;
}

void InMemoryRateLimitStore::give_back(LimitClass cls, std::string_view key,
                                       const BucketConfig& bucket, double amount, bool end_lockout,
                                       std::int64_t now_ms) {
    const std::int64_t now_us = now_ms * kMicrosPerMs;
    Shard& shard = shard_for(cls, key);
    std::lock_guard lock(shard.mu);
    Map& map = shard.maps[static_cast<std::size_t>(cls)];
    auto it = map.find(key);
    if (it == map.end()) return;  // dropped as full: nothing to give back
    Bucket& b = it->second;
    const auto back = static_cast<std::int64_t>(std::llround(amount * token_us(bucket)));
    b.tat_us = std::max(now_us, b.tat_us - back);
    if (end_lockout) b.exhausted = false;
}

void InMemoryRateLimitStore::raise_tat(LimitClass cls, std::string_view key, std::int64_t tat_us,
                                       std::int64_t now_ms) {
    const std::int64_t now_us = now_ms * kMicrosPerMs;
    Shard& shard = shard_for(cls, key);
    std::lock_guard lock(shard.mu);
    Map& map = shard.maps[static_cast<std::size_t>(cls)];
    auto it = map.find(key);
    if (it == map.end()) {
        if (tat_us <= now_us) return;  // full: nothing to remember
        make_room(shard, now_us);
        map.emplace(std::string(key), Bucket{tat_us, false});
        ++shard.count;
        return;
    }
    it->second.tat_us = std::max(it->second.tat_us, tat_us);
}

std::size_t InMemoryRateLimitStore::size() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
        std::lock_guard lock(shard.mu);
        n += shard.count;
    }
    return n;
}

// ---- client addresses ----

std::string normalize_ip(std::string_view ip) {
    ip = trim(ip);
    if (!ip.empty() && ip.front() == '[') {
        // "[v6]" or "[v6]:port"
        auto close = ip.find(']');
        if (close == std::string_view::npos) return {};
        ip = ip.substr(1, close - 1);
    } else if (std::count(ip.begin(), ip.end(), ':') == 1) {
        ip = ip.substr(0, ip.find(':'));  // "v4:port"
    }
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(std::string(ip), ec);
    if (ec) return {};
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
            .to_string();
    }
    return address.to_string();
}

namespace {

// The address's bytes, IPv4 in the first four; false when `text` is not an address.
bool address_bytes(std::string_view text, std::array<unsigned char, 16>& bytes, bool& v4) {
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(std::string(text), ec);
    if (ec) return false;
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
    }
    bytes.fill(0);
    v4 = address.is_v4();
    if (v4) {
        const auto b = address.to_v4().to_bytes();
        std::copy(b.begin(), b.end(), bytes.begin());
    } else {
        bytes = address.to_v6().to_bytes();
    }
    return true;
}

}  // namespace

TrustedProxies::TrustedProxies(const std::vector<std::string>& entries) {
    for (const auto& entry : entries) {
        const auto slash = entry.find('/');
        if (slash == std::string::npos) {
            auto n = normalize_ip(entry);
            if (!n.empty()) addresses_.insert(std::move(n));
            continue;
        }
        Range range;
        const std::string_view prefix_text = std::string_view(entry).substr(slash + 1);
        unsigned prefix = 0;
        if (prefix_text.empty() || prefix_text.size() > 3 ||
            !std::all_of(prefix_text.begin(), prefix_text.end(),
                         [](char c) { return c >= '0' && c <= '9'; }) ||
            !address_bytes(std::string_view(entry).substr(0, slash), range.bytes, range.v4)) {
            continue;
        }
        for (char c : prefix_text) prefix = prefix * 10 + static_cast<unsigned>(c - '0');
        if (prefix > (range.v4 ? 32U : 128U)) continue;
        range.prefix = prefix;
        ranges_.push_back(range);
    }
}

bool TrustedProxies::contains(std::string_view normalized_ip) const {
    if (addresses_.find(normalized_ip) != addresses_.end()) return true;
    if (ranges_.empty()) return false;
    std::array<unsigned char, 16> bytes{};
    bool v4 = false;
    if (!address_bytes(normalized_ip, bytes, v4)) return false;
    for (const auto& range : ranges_) {
        if (range.v4 != v4) continue;
        const unsigned whole = range.prefix / 8;
        const unsigned rest = range.prefix % 8;
        if (!std::equal(bytes.begin(), bytes.begin() + whole, range.bytes.begin())) continue;
        if (rest != 0) {
            const auto mask = static_cast<unsigned char>(0xFFU << (8 - rest));
            if ((bytes[whole] & mask) != (range.bytes[whole] & mask)) continue;
        }
        return true;
    }
    return false;
}

std::string client_ip(const http::Request& request, const TrustedProxies& trusted_proxies) {
    std::string_view remote = request.remote_ip;
    if (request.forwarded_for.empty() || trusted_proxies.empty()) {
        // The hot path (every request): the server writes the peer address in canonical form;
        // only an IPv4 peer on a dual-stack socket needs its "::ffff:" prefix removed.
        constexpr std::string_view kMapped = "::ffff:";
        if (remote.starts_with(kMapped) && remote.find('.') != std::string_view::npos) {
            remote.remove_prefix(kMapped.size());
        }
        return std::string(remote);
    }
    std::string peer = normalize_ip(remote);
    if (peer.empty()) peer = std::string(remote);
    if (!trusted_proxies.contains(peer)) return peer;
    // Walk from the right: each entry was appended by the hop to its right. The first one that
    // is not a trusted proxy is the client as far as anyone we trust can tell.
    std::string_view rest = request.forwarded_for;
    std::string current = peer;
    while (!rest.empty()) {
        auto comma = rest.rfind(',');
        std::string_view entry = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
        std::string address = normalize_ip(entry);
        if (address.empty()) return current;  // garbage: believe only the hop that wrote it
        current = std::move(address);
        if (!trusted_proxies.contains(current)) return current;
    }
    return current;  // every hop is a trusted proxy: the left-most one
}

std::string ip_bucket_key(std::string_view normalized_ip) {
    if (normalized_ip.find(':') == std::string_view::npos) return std::string(normalized_ip);
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(std::string(normalized_ip), ec);
    if (ec || !address.is_v6()) return std::string(normalized_ip);
    auto bytes = address.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), static_cast<unsigned char>(0));
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

std::string login_body_user(std::string_view body) {
    auto parsed = json::parse_object(body);
    if (!parsed) return {};
    auto identifier = json::optional_object(*parsed, "identifier");
    if (!identifier) return {};
    if (*identifier) {
        auto type = json::optional_string(**identifier, "type");
        if (!type || !*type || **type != "m.id.user") return {};
        auto user = json::optional_string(**identifier, "user");
        if (!user || !*user) return {};
        return std::move(**user);
    }
    auto user = json::optional_string(*parsed, "user");
    if (!user || !*user) return {};
    return std::move(**user);
}

// ---- RateLimiter ----

RateLimiter::RateLimiter(const RateLimitsConfig& config, std::string server_name,
                         RateLimitStore& store, const Clock& clock)
    : config_(config),
      server_name_(std::move(server_name)),
      store_(store),
      clock_(clock),
      trusted_(config.trusted_proxies) {
    for (const auto& user : config_.exempt_users) {
        // "@Bot:server" and "@bot:server" name the same account here.
        auto resolved = user_id_for_login(user, server_name_);
        exempt_.insert(resolved ? std::move(*resolved) : user);
    }
    for (std::size_t i = 0; i < kLimitClassCount; ++i) {
        limited_[i] = &metrics::counter(
            "myelin_rate_limited_total", "Requests refused by a rate limit (429)",
            {{"class", std::string(limit_class_name(static_cast<LimitClass>(i)))}});
    }
}

bool RateLimiter::is_exempt(std::string_view user_id) const {
    return !exempt_.empty() && exempt_.find(user_id) != exempt_.end();
}

bool RateLimiter::is_exempt_login(std::string_view typed_user) const {
    if (exempt_.empty() || typed_user.empty()) return false;
    auto resolved = user_id_for_login(typed_user, server_name_);
    return resolved && is_exempt(*resolved);
}

std::string RateLimiter::client_ip(const http::Request& request) const {
    return service::client_ip(request, trusted_);
}

const BucketConfig& RateLimiter::bucket(LimitClass cls) const {
    switch (cls) {
        case LimitClass::kClientIp:
            return config_.client_ip;
        case LimitClass::kLogin:
            return config_.login;
        case LimitClass::kFailedLogin:
            return config_.failed_login;
        case LimitClass::kRegistration:
            return config_.registration;
        case LimitClass::kRefresh:
            return config_.refresh;
        case LimitClass::kTokenValidity:
            return config_.token_validity;
    }
    return config_.client_ip;
}

Error RateLimiter::refused(LimitClass cls, std::int64_t retry_after_ms) {
    limited_[static_cast<std::size_t>(cls)]->inc();
    const auto capped = std::min<std::int64_t>(retry_after_ms, 24LL * 3600 * 1000);
    return errors::limit_exceeded(static_cast<int>(capped));
}

Result<void> RateLimiter::check(LimitClass cls, std::string_view key) {
    if (!config_.enabled) return {};
    auto r = store_.take(cls, key, bucket(cls), 1.0, clock_.now_ms());
    if (!r.granted) return refused(cls, r.retry_after_ms);
    return {};
}

boost::asio::awaitable<DrawResult> RateLimiter::take_awaited(LimitClass cls, std::string key) {
    RateLimitStore* store = &store_;
    const BucketConfig* config = &bucket(cls);
    const std::int64_t now = clock_.now_ms();
    auto initiation = [store, config, cls, now, key = std::move(key)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        store->take_async(cls, std::move(key), *config, 1.0, now, [shared](DrawResult r) {
            auto ex = boost::asio::get_associated_executor(*shared);
            boost::asio::post(ex, [shared, r]() mutable { std::move (*shared)(r); });
        });
    };
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(DrawResult)>(
        std::move(initiation), boost::asio::use_awaitable);
}

boost::asio::awaitable<Result<void>> RateLimiter::check_async(LimitClass cls, std::string key) {
    if (!config_.enabled) co_return Result<void>{};
    if (!store_.decides_remotely(cls)) co_return check(cls, key);
    auto op = take_awaited(cls, std::move(key));
    const DrawResult r = co_await std::move(op);
    if (!r.granted) co_return refused(cls, r.retry_after_ms);
    co_return Result<void>{};
}

boost::asio::awaitable<Result<RateLimiter::FailedLoginTicket>>
RateLimiter::reserve_failed_login_async(std::string user_id) {
    if (!config_.enabled || !store_.decides_remotely(LimitClass::kFailedLogin)) {
        co_return reserve_failed_login(user_id);
    }
    auto op = take_awaited(LimitClass::kFailedLogin, std::move(user_id));
    const DrawResult r = co_await std::move(op);
    if (!r.granted) co_return refused(LimitClass::kFailedLogin, r.retry_after_ms);
    FailedLoginTicket ticket;
    ticket.reserved = true;
    ticket.exhausted_now = r.exhausted_now;
    co_return ticket;
}

void RateLimiter::give_back(LimitClass cls, std::string_view key) {
    if (!config_.enabled) return;
    store_.give_back(cls, key, bucket(cls), 1.0, false, clock_.now_ms());
}

Result<RateLimiter::FailedLoginTicket> RateLimiter::reserve_failed_login(std::string_view user_id) {
    FailedLoginTicket ticket;
    // Exempt users are not exempt here: a bot never fails with its own password, and its
    // password must not be open to unlimited guessing.
    if (!config_.enabled) return ticket;
    auto r =
        store_.take(LimitClass::kFailedLogin, user_id, config_.failed_login, 1.0, clock_.now_ms());
    if (!r.granted) return refused(LimitClass::kFailedLogin, r.retry_after_ms);
    ticket.reserved = true;
    ticket.exhausted_now = r.exhausted_now;
    return ticket;
}

void RateLimiter::release_failed_login(std::string_view user_id, const FailedLoginTicket& ticket) {
    if (!ticket.reserved) return;
    store_.give_back(LimitClass::kFailedLogin, user_id, config_.failed_login, 1.0,
                     ticket.exhausted_now, clock_.now_ms());
}

}  // namespace myelin::service
