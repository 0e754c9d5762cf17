#pragma once

// The in-memory map from access-token hash to session, consulted on every authenticated
// request so that a known token touches no storage. It is authoritative for revocation: a
// revoked or advanced session flips here (after its durable write) before the revoking call
// returns, and every token of that session sees it at once through the shared CachedSession.
//
// Thread-safety: all methods are safe to call concurrently from any thread. The map is split
// into shards, each behind its own shared_mutex; session state is atomics.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "myelin/storage/records.hpp"

namespace myelin::auth {

// One session as the cache knows it; shared by all its cached tokens.
struct CachedSession {
    std::int64_t session_id = 0;
    std::string user_id;
    std::string device_id;
    bool is_guest = false;
    bool refreshable = false;
    std::int64_t ends_ts = 0;  // absolute end; 0: none
    std::atomic<std::int64_t> current_generation{0};
    std::atomic<std::int64_t> used_generation{0};
    std::atomic<int> revoked_reason{0};  // storage::RevokeReason; 0: live
    // When this session's use was last handed to the activity tracker, and a hash of the
    // address it came from: lets the tracker skip repeated sightings (see ActivityTracker).
    std::atomic<std::int64_t> activity_noted_ms{0};
    std::atomic<std::uint64_t> activity_ip_hash{0};

    bool revoked() const { return revoked_reason.load(std::memory_order_acquire) != 0; }
};

struct CachedAccessToken {
    std::shared_ptr<CachedSession> session;
    std::int64_t generation = 0;
    std::int64_t expires_ts = 0;  // 0: never
};

struct TokenHashHasher {
    std::size_t operator()(const storage::TokenHash& h) const noexcept {
        std::size_t out;
        static_assert(sizeof(out) <= sizeof(storage::TokenHash));
        __builtin_memcpy(&out, h.data(), sizeof(out));  // the hash is uniformly random already
        return out;
    }
};

class TokenCache {
public:
    // Registers the cache's metrics (lookups, revocations), so they exist from start-up.
    TokenCache();
    TokenCache(const TokenCache&) = delete;
    TokenCache& operator=(const TokenCache&) = delete;

    // The cached token, or nullopt.
    std::optional<CachedAccessToken> find(const storage::TokenHash& hash) const;

    // The cached session object for this record, creating it from `record` when absent (an
    // existing one is returned as is, so all its tokens keep sharing it).
    std::shared_ptr<CachedSession> session_for(const storage::SessionRecord& record);

    // Caches a token. `observed_epoch` is revocation_epoch() read before the data was loaded
    // from storage: if a revocation happened since, the insert is skipped (the loaded data may
    // be stale). Pass nullopt for data that this process has just written itself.
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

private:
    static constexpr std::size_t kShards = 32;
    struct TokenShard {
        mutable std::shared_mutex mu;
        std::unordered_map<storage::TokenHash, CachedAccessToken, TokenHashHasher>
            tokens;  // guarded by mu
    };
    struct SessionEntry {
        std::shared_ptr<CachedSession> session;
        std::vector<storage::TokenHash> token_hashes;  // cached tokens of this session
    };
    struct SessionShard {
        mutable std::mutex mu;
        std::unordered_map<std::int64_t, SessionEntry> sessions;  // guarded by mu
    };

    TokenShard& token_shard(const storage::TokenHash& h) const;
    SessionShard& session_shard(std::int64_t id) const;
    void erase_tokens(const std::vector<storage::TokenHash>& hashes);
    void revoke_in_cache(std::int64_t session_id, storage::RevokeReason reason);
    void advance_in_cache(std::int64_t session_id, std::int64_t current, std::int64_t used,
                          bool stale_loads_possible);

    mutable std::array<TokenShard, kShards> token_shards_;
    mutable std::array<SessionShard, kShards> session_shards_;
    std::atomic<std::uint64_t> epoch_{0};
};

}  // namespace myelin::auth
