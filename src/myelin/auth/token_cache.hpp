#pragma once

// The in-memory map from access-token hash to session, consulted on every authenticated
// request so that a known token touches no storage. It is authoritative for revocation: a
// revoked or advanced session flips here (after its durable write) before the revoking call
// returns, and every token of that session sees it at once through the shared CachedSession.
//
// Layout (sized for a million live sessions at ~230 bytes each; see bench/README.md "Scale"):
// session records and token records live in two slabs of fixed-size records with stable
// addresses (no allocation per session or token once a slab chunk exists); a session's tokens
// are chained through their records; token hashes and session ids are found through
// open-addressing indexes of 8-byte entries (a fingerprint and a record number). Large slab
// chunks and indexes ask for transparent huge pages, so a lookup among a million cached
// sessions costs about as many TLB misses as among a thousand.
//
// Thread-safety: all methods are safe to call concurrently from any thread. The indexes are
// split into shards, each behind its own lock; session state is atomics.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

#include "myelin/auth/fingerprint_index.hpp"
#include "myelin/auth/record_slab.hpp"
#include "myelin/auth/user_interner.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::auth {

class TokenCache;

// One session as the cache knows it; shared by all its cached tokens. Records live in the
// cache's slab and are reached through SessionRef; a record is reused for another session only
// once no SessionRef to it is left and the cache has dropped it.
struct alignas(64) CachedSession {
    std::int64_t session_id = 0;
    std::atomic<int> revoked_reason{0};  // storage::RevokeReason; 0: live
    bool is_guest = false;
    bool refreshable = false;
    std::int64_t ends_ts = 0;  // absolute end; 0: none
    std::atomic<std::int64_t> current_generation{0};
    std::atomic<std::int64_t> used_generation{0};
    // When this session's use was last handed to the activity tracker, and a hash of the
    // address it came from: lets the tracker skip repeated sightings (see ActivityTracker).
    std::atomic<std::int64_t> activity_noted_ms{0};
    std::atomic<std::uint64_t> activity_ip_hash{0};

    // The user ID (shared by every cached session of that user). Empty for a record that is
    // not in a cache.
    const std::string& user_id() const {
        return user_ != nullptr ? user_->id : detail::InternedUser::empty();
    }
    std::string device_id;

    bool revoked() const { return revoked_reason.load(std::memory_order_acquire) != 0; }

private:
    friend class TokenCache;
    friend class SessionRef;
    detail::InternedUser* user_ = nullptr;           // set while the record holds a session
    std::atomic<std::uint32_t> refs_{0};             // SessionRefs, plus one while indexed
    std::uint32_t first_token_ = detail::kNoRecord;  // chain of its token records; session lock
    std::uint32_t slot_ = 0;                         // its number in the session slab
    bool indexed_ = false;                           // in the session index; session lock
};

// A counted reference to a cached session, as cheap to copy as a shared_ptr (one atomic
// increment, no allocation). While one exists the record is not reused. Must not outlive the
// TokenCache it came from. Null when default-constructed.
class SessionRef {
public:
    SessionRef() = default;
    SessionRef(const SessionRef& other) noexcept : cache_(other.cache_), s_(other.s_) {
        if (s_ != nullptr) s_->refs_.fetch_add(1, std::memory_order_relaxed);
    }
    SessionRef(SessionRef&& other) noexcept : cache_(other.cache_), s_(other.s_) {
        other.s_ = nullptr;
    }
    SessionRef& operator=(const SessionRef& other) noexcept {
        SessionRef copy(other);
        swap(copy);
        return *this;
    }
    SessionRef& operator=(SessionRef&& other) noexcept {
        SessionRef moved(std::move(other));
        swap(moved);
        return *this;
    }
    ~SessionRef() { reset(); }

    void reset() noexcept;
    void swap(SessionRef& other) noexcept {
        std::swap(cache_, other.cache_);
        std::swap(s_, other.s_);
    }

    CachedSession* get() const { return s_; }
    CachedSession* operator->() const { return s_; }
    CachedSession& operator*() const { return *s_; }
    explicit operator bool() const { return s_ != nullptr; }

private:
    friend class TokenCache;
    // Takes a new reference to `s` (whose count must already be above zero).
    SessionRef(TokenCache* cache, CachedSession* s) noexcept : cache_(cache), s_(s) {
        s_->refs_.fetch_add(1, std::memory_order_relaxed);
    }
    TokenCache* cache_ = nullptr;
    CachedSession* s_ = nullptr;
};

struct CachedAccessToken {
    SessionRef session;
    std::int64_t generation = 0;
    std::int64_t expires_ts = 0;  // 0: never
};

class TokenCache {
public:
    // Registers the cache's metrics (lookups, revocations), so they exist from start-up.
    TokenCache();
    // Every SessionRef must be gone by then.
    ~TokenCache();
    TokenCache(const TokenCache&) = delete;
    TokenCache& operator=(const TokenCache&) = delete;

    // The cached token, or nullopt. Allocates nothing.
    std::optional<CachedAccessToken> find(const storage::TokenHash& hash) const;

    // The cached session object for this record, creating it from `record` when absent (an
    // existing one is returned as is, so all its tokens keep sharing it).
    SessionRef session_for(const storage::SessionRecord& record);

    // Caches a token. `observed_epoch` is revocation_epoch() read before the data was loaded
    // from storage: if a revocation happened since, the insert is skipped (the loaded data may
    // be stale). Pass nullopt for data that this process has just written itself. A token
    // already cached is updated in place.
    void insert(const storage::TokenHash& hash, CachedAccessToken token,
                std::optional<std::uint64_t> observed_epoch = std::nullopt);

    // Marks the session revoked (every cached token of it fails from now on), drops its
    // tokens from the map and bumps the revocation epoch. Counts the revocation in
    // myelin_session_revocations_total{reason}: call it where this process revokes a session.
    void revoke_session(std::int64_t session_id, storage::RevokeReason reason);

    // The same for a revocation read from the shared revocation log (made by this process or
    // another one sharing the database): idempotent, and not counted as a revocation again.
    void apply_logged_revocation(std::int64_t session_id, storage::RevokeReason reason);

    // Records that generation `used` of the session has been used (older tokens die) and
    // `current` minted; drops cached tokens older than `used`.
    void advance_session(std::int64_t session_id, std::int64_t current, std::int64_t used);

    // The same for a change read from the session feed (made by another process, or this one):
    // also bumps the epoch, since a concurrent load from storage may have read the session
    // before the change.
    void apply_logged_advance(std::int64_t session_id, std::int64_t current, std::int64_t used);

    // Forgets every cached token and session (they are loaded from storage again on their next
    // use) and bumps the epoch: for when changes made elsewhere may have been missed.
    void clear();

    // Incremented by every revocation (and by apply_logged_advance and clear); see insert().
    std::uint64_t revocation_epoch() const { return epoch_.load(std::memory_order_acquire); }

    // Tokens and sessions cached (for metrics and tests).
    std::size_t token_count() const;
    std::size_t session_count() const;

    // Session and token records allocated in the slabs, live or waiting for reuse (for tests:
    // shows that records are reused rather than added).
    std::size_t session_records() const { return sessions_.allocated(); }
    std::size_t token_records() const { return tokens_.allocated(); }

private:
    friend class SessionRef;
    static constexpr std::size_t kShards = 8;

    struct alignas(64) TokenRecord {
        storage::TokenHash hash{};
        std::uint32_t session_slot = 0;
        std::uint32_t next = detail::kNoRecord;  // next token of the same session
        std::int64_t generation = 0;
        std::int64_t expires_ts = 0;
    };
    struct alignas(64) TokenShard {
        mutable std::shared_mutex mu;
        detail::FingerprintIndex index;  // token hash -> token record; guarded by mu
    };
    struct alignas(64) SessionShard {
        mutable std::mutex mu;
        detail::FingerprintIndex index;  // session id -> session record; guarded by mu
    };

    TokenShard& token_shard(const storage::TokenHash& h) const;
    SessionShard& session_shard(std::int64_t id) const;
    // The indexed session record with this id, or nullptr. Caller holds the shard's lock.
    CachedSession* find_session_locked(SessionShard& shard, std::int64_t id) const;
    // Removes the token record from the token index (when it is still the one filed under its
    // hash) and returns it to the slab. Caller holds its session's shard lock.
    void drop_token_locked(std::uint32_t token_slot);
    // Drops every token of the session and the session itself from the indexes, and the
    // cache's reference to it. Caller holds the session's shard lock.
    void forget_session_locked(SessionShard& shard, CachedSession& s);
    void release(CachedSession* s) noexcept;
    void recycle(CachedSession* s) noexcept;
    void revoke_in_cache(std::int64_t session_id, storage::RevokeReason reason);
    void advance_in_cache(std::int64_t session_id, std::int64_t current, std::int64_t used,
                          bool stale_loads_possible);

    mutable std::array<TokenShard, kShards> token_shards_;
    mutable std::array<SessionShard, kShards> session_shards_;
    detail::Slab<CachedSession> sessions_;
    detail::Slab<TokenRecord> tokens_;
    detail::UserInterner users_;
    std::atomic<std::uint64_t> epoch_{0};
};

inline void SessionRef::reset() noexcept {
    if (s_ != nullptr) {
        cache_->release(s_);
        s_ = nullptr;
    }
}

}  // namespace myelin::auth
