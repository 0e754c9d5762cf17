#include "myelin/auth/token_cache.hpp"

#include <algorithm>
#include <cstring>

#include "myelin/core/metrics.hpp"

namespace myelin::auth {
namespace {

// The label value of myelin_session_revocations_total for a reason.
const char* reason_label(storage::RevokeReason reason) {
    switch (reason) {
        case storage::RevokeReason::kNone:
            return "none";
        case storage::RevokeReason::kLogout:
            return "logout";
        case storage::RevokeReason::kReplaced:
            return "replaced";
        case storage::RevokeReason::kRefreshReuse:
            return "refresh_reuse";
        case storage::RevokeReason::kAdmin:
            return "admin";
        case storage::RevokeReason::kExpired:
            return "expired";
        case storage::RevokeReason::kPasswordChange:
            return "password_change";
        case storage::RevokeReason::kDeactivated:
            return "deactivated";
    }
    return "other";
}

// The 32-bit fingerprint of a token hash (its first bytes: the hash is uniformly random) and
// of a session id (mixed, since ids are sequential).
std::uint32_t token_fingerprint(const storage::TokenHash& h) {
    std::uint32_t fp;
    std::memcpy(&fp, h.data(), sizeof(fp));
    return fp;
}

std::uint32_t session_fingerprint(std::int64_t id) {
    auto x = static_cast<std::uint64_t>(id) + 0x9E3779B97F4A7C15ULL;  // splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return static_cast<std::uint32_t>(x);
}

constexpr int kReasonSlots = 8;  // RevokeReason values 0..7

struct CacheMetrics {
    metrics::Counter& hits;
    metrics::Counter& misses;
    std::array<metrics::Counter*, kReasonSlots> revocations{};
    metrics::Counter& applied_from_log;

    static CacheMetrics& get() {
        static CacheMetrics* m = make();
        return *m;
    }

private:
    static CacheMetrics* make() {
        constexpr const char* kLookups = "myelin_token_cache_lookups_total";
        constexpr const char* kLookupsHelp =
            "Access-token lookups in the in-memory token cache, by result.";
        auto* m = new CacheMetrics{
            metrics::counter(kLookups, kLookupsHelp, {{"result", "hit"}}),
            metrics::counter(kLookups, kLookupsHelp, {{"result", "miss"}}),
            {},
            metrics::counter("myelin_revocation_log_applied_total",
                             "Revocation log entries applied to the token cache (revocations "
                             "made by any process, this one included).")};
        for (int i = 0; i < kReasonSlots; ++i) {
            m->revocations[static_cast<std::size_t>(i)] = &metrics::counter(
                "myelin_session_revocations_total", "Sessions revoked by this process, by reason.",
                {{"reason", reason_label(static_cast<storage::RevokeReason>(i))}});
        }
        return m;
    }
};

}  // namespace

TokenCache::TokenCache() { CacheMetrics::get(); }

TokenCache::~TokenCache() = default;

TokenCache::TokenShard& TokenCache::token_shard(const storage::TokenHash& h) const {
    return token_shards_[h[31] % kShards];
}

TokenCache::SessionShard& TokenCache::session_shard(std::int64_t id) const {
    return session_shards_[static_cast<std::uint64_t>(id) % kShards];
}

CachedSession* TokenCache::find_session_locked(SessionShard& shard, std::int64_t id) const {
    const std::uint32_t slot = shard.index.find(
        session_fingerprint(id), [&](std::uint32_t s) { return sessions_.at(s).session_id == id; });
    if (slot == detail::kNoRecord) return nullptr;
    return &sessions_.at(slot);
}

std::optional<CachedAccessToken> TokenCache::find(const storage::TokenHash& hash) const {
    static CacheMetrics& m = CacheMetrics::get();
    auto& shard = token_shard(hash);
    std::shared_lock lock(shard.mu);
    const std::uint32_t slot = shard.index.find(
        token_fingerprint(hash), [&](std::uint32_t t) { return tokens_.at(t).hash == hash; });
    if (slot == detail::kNoRecord) {
        m.misses.inc();
        return std::nullopt;
    }
    m.hits.inc();
    const TokenRecord& t = tokens_.at(slot);
    // An indexed token's session is indexed too, so the cache's own reference keeps the
    // count above zero while we take ours.
    CachedAccessToken out;
    out.session = SessionRef(const_cast<TokenCache*>(this), &sessions_.at(t.session_slot));
    out.generation = t.generation;
    out.expires_ts = t.expires_ts;
    return out;
}

SessionRef TokenCache::session_for(const storage::SessionRecord& record) {
    auto& shard = session_shard(record.session_id);
    std::lock_guard lock(shard.mu);
    if (auto* found = find_session_locked(shard, record.session_id)) return SessionRef(this, found);
    const std::uint32_t slot = sessions_.allocate();
    auto& s = sessions_.at(slot);
    try {
        s.user_ = users_.acquire(record.user_id);
        s.device_id.assign(record.device_id);
        shard.index.insert(session_fingerprint(record.session_id), slot);
    } catch (...) {
        if (s.user_ != nullptr) users_.release(s.user_);
        s.user_ = nullptr;
        sessions_.free(slot);
        throw;
    }
    s.slot_ = slot;
    s.session_id = record.session_id;
    s.is_guest = record.is_guest;
    s.refreshable = record.refreshable;
    s.ends_ts = record.ends_ts;
    s.current_generation.store(record.current_generation, std::memory_order_relaxed);
    s.used_generation.store(record.used_generation, std::memory_order_relaxed);
    s.revoked_reason.store(static_cast<int>(record.revoked_reason), std::memory_order_relaxed);
    s.activity_noted_ms.store(0, std::memory_order_relaxed);
    s.activity_ip_hash.store(0, std::memory_order_relaxed);
    s.first_token_ = detail::kNoRecord;
    s.indexed_ = true;
    s.refs_.store(1, std::memory_order_relaxed);  // the index's
    return SessionRef(this, &s);
}

void TokenCache::insert(const storage::TokenHash& hash, CachedAccessToken token,
                        std::optional<std::uint64_t> observed_epoch) {
    CachedSession* given = token.session.get();
    auto& sshard = session_shard(given->session_id);
    std::lock_guard lock(sshard.mu);
    if (observed_epoch && *observed_epoch != revocation_epoch()) return;
    CachedSession* s = find_session_locked(sshard, given->session_id);
    if (s == nullptr) {
        // Dropped from the cache since session_for() (revoked, or cleared): file the record
        // again, as it is (a revoked one keeps failing its tokens).
        s = given;
        sshard.index.insert(session_fingerprint(s->session_id), s->slot_);
        s->refs_.fetch_add(1, std::memory_order_relaxed);
        s->indexed_ = true;
    }
    const std::uint32_t fp = token_fingerprint(hash);
    auto& tshard = token_shard(hash);
    {
        // Already cached for this session: update in place.
        std::unique_lock tlock(tshard.mu);
        const std::uint32_t existing =
            tshard.index.find(fp, [&](std::uint32_t t) { return tokens_.at(t).hash == hash; });
        if (existing != detail::kNoRecord && tokens_.at(existing).session_slot == s->slot_) {
            auto& t = tokens_.at(existing);
            t.generation = token.generation;
            t.expires_ts = token.expires_ts;
            return;
        }
    }
    // A new record, chained to the session and filed under the hash; readers reach it only
    // through the index, under the token shard lock. (A hash filed for another session, which
    // random tokens never produce, is pointed at the new record; the old record stays on the
    // other session's chain until that session goes.)
    const std::uint32_t slot = tokens_.allocate();
    auto& t = tokens_.at(slot);
    t.hash = hash;
    t.session_slot = s->slot_;
    t.generation = token.generation;
    t.expires_ts = token.expires_ts;
    {
        std::unique_lock tlock(tshard.mu);
        try {
            if (!tshard.index.reassign(
                    fp, [&](std::uint32_t o) { return tokens_.at(o).hash == hash; }, slot)) {
                tshard.index.insert(fp, slot);
            }
        } catch (...) {
            tlock.unlock();
            tokens_.free(slot);
            throw;
        }
    }
    t.next = s->first_token_;
    s->first_token_ = slot;
}

void TokenCache::drop_token_locked(std::uint32_t token_slot) {
    const auto& t = tokens_.at(token_slot);
    auto& tshard = token_shard(t.hash);
    {
        std::unique_lock tlock(tshard.mu);
        tshard.index.erase(token_fingerprint(t.hash),
                           [&](std::uint32_t o) { return o == token_slot; });
    }
    tokens_.free(token_slot);
}

void TokenCache::forget_session_locked(SessionShard& shard, CachedSession& s) {
    for (std::uint32_t t = s.first_token_; t != detail::kNoRecord;) {
        const std::uint32_t next = tokens_.at(t).next;
        drop_token_locked(t);
        t = next;
    }
    s.first_token_ = detail::kNoRecord;
    const std::uint32_t slot = s.slot_;
    shard.index.erase(session_fingerprint(s.session_id),
                      [&](std::uint32_t o) { return o == slot; });
    s.indexed_ = false;
    release(&s);  // the index's reference
}

void TokenCache::release(CachedSession* s) noexcept {
    if (s->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) recycle(s);
}

void TokenCache::recycle(CachedSession* s) noexcept {
    // No reference is left and the record is in no index: nothing else can reach it.
    if (s->user_ != nullptr) users_.release(s->user_);
    s->user_ = nullptr;
    try {
        sessions_.free(s->slot_);
    } catch (...) {
        // The free list could not grow: the record is lost to reuse, nothing else breaks.
    }
}

void TokenCache::revoke_session(std::int64_t session_id, storage::RevokeReason reason) {
    static CacheMetrics& m = CacheMetrics::get();
    const auto slot = static_cast<std::size_t>(reason);
    if (slot < m.revocations.size()) m.revocations[slot]->inc();
    revoke_in_cache(session_id, reason);
}

void TokenCache::apply_logged_revocation(std::int64_t session_id, storage::RevokeReason reason) {
    static CacheMetrics& m = CacheMetrics::get();
    m.applied_from_log.inc();
    revoke_in_cache(session_id, reason);
}

void TokenCache::revoke_in_cache(std::int64_t session_id, storage::RevokeReason reason) {
    auto& sshard = session_shard(session_id);
    std::lock_guard lock(sshard.mu);
    epoch_.fetch_add(1, std::memory_order_acq_rel);
    CachedSession* s = find_session_locked(sshard, session_id);
    if (s == nullptr) return;
    s->revoked_reason.store(static_cast<int>(reason), std::memory_order_release);
    forget_session_locked(sshard, *s);
}

void TokenCache::advance_session(std::int64_t session_id, std::int64_t current, std::int64_t used) {
    advance_in_cache(session_id, current, used, false);
}

void TokenCache::apply_logged_advance(std::int64_t session_id, std::int64_t current,
                                      std::int64_t used) {
    advance_in_cache(session_id, current, used, true);
}

void TokenCache::clear() {
    for (auto& sshard : session_shards_) {
        std::lock_guard lock(sshard.mu);
        epoch_.fetch_add(1, std::memory_order_acq_rel);
        std::vector<CachedSession*> all;
        all.reserve(sshard.index.size());
        sshard.index.for_each([&](std::uint32_t slot) { all.push_back(&sessions_.at(slot)); });
        for (auto* s : all) forget_session_locked(sshard, *s);
        sshard.index.clear();
    }
    // Give the token indexes' memory back too (tokens are only ever filed under a session, so
    // they are empty now).
    for (auto& tshard : token_shards_) {
        std::unique_lock lock(tshard.mu);
        if (tshard.index.size() == 0) tshard.index.clear();
    }
}

void TokenCache::advance_in_cache(std::int64_t session_id, std::int64_t current, std::int64_t used,
                                  bool stale_loads_possible) {
    auto& sshard = session_shard(session_id);
    std::lock_guard lock(sshard.mu);
    // Another process made this change: a load from storage that is in flight now may have read
    // the session before it, so inserts that observed an older epoch must be dropped.
    if (stale_loads_possible) epoch_.fetch_add(1, std::memory_order_acq_rel);
    CachedSession* s = find_session_locked(sshard, session_id);
    if (s == nullptr) return;
    if (current > s->current_generation.load()) s->current_generation.store(current);
    if (used > s->used_generation.load()) s->used_generation.store(used, std::memory_order_release);
    // Drop tokens of generations that can no longer authenticate. Their generation only
    // changes under this session's lock, which we hold.
    const std::int64_t floor = s->used_generation.load();
    std::uint32_t* link = &s->first_token_;
    while (*link != detail::kNoRecord) {
        const std::uint32_t t = *link;
        auto& rec = tokens_.at(t);
        if (rec.generation < floor) {
            *link = rec.next;
            drop_token_locked(t);
        } else {
            link = &rec.next;
        }
    }
}

std::size_t TokenCache::token_count() const {
    std::size_t n = 0;
    for (auto& shard : token_shards_) {
        std::shared_lock lock(shard.mu);
        n += shard.index.size();
    }
    return n;
}

std::size_t TokenCache::session_count() const {
    std::size_t n = 0;
    for (auto& shard : session_shards_) {
        std::lock_guard lock(shard.mu);
        n += shard.index.size();
    }
    return n;
}

}  // namespace myelin::auth
