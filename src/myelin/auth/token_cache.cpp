#include "myelin/auth/token_cache.hpp"

#include <algorithm>

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

TokenCache::TokenShard& TokenCache::token_shard(const storage::TokenHash& h) const {
    return token_shards_[h[31] % kShards];
}

TokenCache::SessionShard& TokenCache::session_shard(std::int64_t id) const {
    return session_shards_[static_cast<std::uint64_t>(id) % kShards];
}

std::optional<CachedAccessToken> TokenCache::find(const storage::TokenHash& hash) const {
    static CacheMetrics& m = CacheMetrics::get();
    auto& shard = token_shard(hash);
    std::shared_lock lock(shard.mu);
    auto it = shard.tokens.find(hash);
    if (it == shard.tokens.end()) {
        m.misses.inc();
        return std::nullopt;
    }
    m.hits.inc();
    return it->second;
}

std::shared_ptr<CachedSession> TokenCache::session_for(const storage::SessionRecord& record) {
    auto& shard = session_shard(record.session_id);
    std::lock_guard lock(shard.mu);
    auto& entry = shard.sessions[record.session_id];
    if (!entry.session) {
        auto s = std::make_shared<CachedSession>();
        s->session_id = record.session_id;
        s->user_id = record.user_id;
        s->device_id = record.device_id;
        s->is_guest = record.is_guest;
        s->refreshable = record.refreshable;
        s->ends_ts = record.ends_ts;
        s->current_generation = record.current_generation;
        s->used_generation = record.used_generation;
        s->revoked_reason = static_cast<int>(record.revoked_reason);
        entry.session = std::move(s);
    }
    return entry.session;
}

void TokenCache::insert(const storage::TokenHash& hash, CachedAccessToken token,
                        std::optional<std::uint64_t> observed_epoch) {
    const std::int64_t session_id = token.session->session_id;
    {
        auto& sshard = session_shard(session_id);
        std::lock_guard lock(sshard.mu);
        if (observed_epoch && *observed_epoch != revocation_epoch()) return;
        auto& entry = sshard.sessions[session_id];
        if (!entry.session) entry.session = token.session;
        token.session = entry.session;
        if (std::find(entry.token_hashes.begin(), entry.token_hashes.end(), hash) ==
            entry.token_hashes.end()) {
            entry.token_hashes.push_back(hash);
        }
        // Holding the session shard lock while inserting keeps revoke_session() from missing a
        // token that is being added concurrently.
        auto& tshard = token_shard(hash);
        std::unique_lock tlock(tshard.mu);
        tshard.tokens.insert_or_assign(hash, std::move(token));
    }
}

void TokenCache::erase_tokens(const std::vector<storage::TokenHash>& hashes) {
    for (const auto& h : hashes) {
        auto& tshard = token_shard(h);
        std::unique_lock tlock(tshard.mu);
        tshard.tokens.erase(h);
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
    auto it = sshard.sessions.find(session_id);
    if (it == sshard.sessions.end()) return;
    it->second.session->revoked_reason.store(static_cast<int>(reason), std::memory_order_release);
    erase_tokens(it->second.token_hashes);
    sshard.sessions.erase(it);
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
        for (auto& [id, entry] : sshard.sessions) erase_tokens(entry.token_hashes);
        sshard.sessions.clear();
    }
    // Tokens whose session entry was never created (cannot happen through insert(), which
    // always files the token under its session) would survive the loop above; sweep anyway.
    for (auto& tshard : token_shards_) {
        std::unique_lock lock(tshard.mu);
        tshard.tokens.clear();
    }
}

void TokenCache::advance_in_cache(std::int64_t session_id, std::int64_t current, std::int64_t used,
                                  bool stale_loads_possible) {
    auto& sshard = session_shard(session_id);
    std::lock_guard lock(sshard.mu);
    // Another process made this change: a load from storage that is in flight now may have read
    // the session before it, so inserts that observed an older epoch must be dropped.
    if (stale_loads_possible) epoch_.fetch_add(1, std::memory_order_acq_rel);
    auto it = sshard.sessions.find(session_id);
    if (it == sshard.sessions.end()) return;
    auto& s = *it->second.session;
    if (current > s.current_generation.load()) s.current_generation.store(current);
    if (used > s.used_generation.load()) s.used_generation.store(used, std::memory_order_release);
    // Drop tokens of generations that can no longer authenticate.
    std::vector<storage::TokenHash> keep;
    std::vector<storage::TokenHash> drop;
    for (const auto& h : it->second.token_hashes) {
        auto& tshard = token_shard(h);
        std::shared_lock tlock(tshard.mu);
        auto t = tshard.tokens.find(h);
        if (t != tshard.tokens.end() && t->second.generation < s.used_generation.load()) {
            drop.push_back(h);
        } else if (t != tshard.tokens.end()) {
            keep.push_back(h);
        }
    }
    it->second.token_hashes = std::move(keep);
    erase_tokens(drop);
}

std::size_t TokenCache::token_count() const {
    std::size_t n = 0;
    for (auto& shard : token_shards_) {
        std::shared_lock lock(shard.mu);
        n += shard.tokens.size();
    }
    return n;
}

std::size_t TokenCache::session_count() const {
    std::size_t n = 0;
    for (auto& shard : session_shards_) {
        std::lock_guard lock(shard.mu);
        n += shard.sessions.size();
    }
    return n;
}

}  // namespace myelin::auth
