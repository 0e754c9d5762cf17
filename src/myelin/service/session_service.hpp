#pragma once

// The token engine: creates sessions (one sign-in on one device), authenticates access tokens,
// rotates refresh tokens for both refresh endpoints, and ends sessions. Rules it enforces:
// - tokens are stored only as keyed hashes; a malformed token is refused before any lookup;
// - rotation is atomic (one writer, compare-and-swap on the session's generation) and
//   idempotent: until the successor pair is first used, the old refresh token gets the same
//   pair back (kept sealed under a key only that token derives, so it survives restarts);
// - the old access token dies when the new one is first used (or at its own expiry);
// - a rotated-out refresh token presented after its successor was used revokes the whole
//   session (not the device) and records a security event;
// - revocations reach the in-memory token cache before the revoking call returns.
// Thread-safety: all methods may be called concurrently from any network thread.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/asio/awaitable.hpp>

#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_cache.hpp"
#include "myelin/auth/token_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/core/error.hpp"
#include "myelin/service/identity.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// What a successful sign-in or refresh hands to the client.
struct IssuedTokens {
    std::string user_id;
    std::string device_id;
    std::string access_token;
    std::optional<std::string> refresh_token;
    std::optional<std::int64_t> expires_in_ms;  // absent: the access token does not expire
};

// The parts of a new session that must reach the cache once its write has committed.
struct NewSession {
    IssuedTokens tokens;
    storage::SessionRecord session;
    storage::AccessTokenRecord access;
    std::vector<std::int64_t> replaced_sessions;  // revoked because the device signed in again
};

// Which refresh endpoint is asking: they share the engine but differ in contract.
enum class RefreshFlavor {
    kModern,  // POST /v3/refresh: retry-safe until the successor is used; errors 401
    kLegacy,  // POST /r0/tokenrefresh: the token dies on use, no retry window; errors 403
};

// Outcome of authenticating without waiting.
struct AuthNeedsStorage {};  // the answer needs a storage read or write: call authenticate()

class SessionService {
public:
    SessionService(storage::Database& db, const auth::TokenHasher& hasher,
                   const auth::SuccessorSealer& sealer, auth::TokenCache& cache, const Clock& clock,
                   TokensConfig config);

    // Within a write transaction: revokes the device's live sessions (reason kReplaced, their
    // tokens deleted), then creates a session with a fresh token pair (a refresh token only if
    // `refreshable`). Call publish_session() after the commit.
    Result<NewSession> create_session(storage::WriteTxn& txn, const std::string& user_id,
                                      const std::string& device_id, bool refreshable,
                                      bool is_guest);

    // After the commit of create_session: replaced sessions die in the cache and the new
    // access token is cached.
    void publish_session(const NewSession& created);

    // Authenticates from the cache alone when it can: the Identity, an error (401 with the
    // right soft_logout), or AuthNeedsStorage. `allow_expired` accepts expired tokens (logout).
    std::variant<Identity, Error, AuthNeedsStorage> authenticate_now(std::string_view token,
                                                                     bool allow_expired);

    // Authenticates, reading storage on a cache miss and recording the first use of a new
    // generation durably (which ends the previous access token). Errors: 401 M_UNKNOWN_TOKEN
    // (soft_logout as the case demands), 503 when storage is unavailable.
    boost::asio::awaitable<Result<Identity>> authenticate(std::string token, bool allow_expired);

    // Exchanges a refresh token (see the class comment). Modern errors: 401 M_UNKNOWN_TOKEN
    // (soft_logout true when the session was ended for reuse or expiry). Legacy errors: 403
    // M_FORBIDDEN. Both: 503 when storage is unavailable.
    boost::asio::awaitable<Result<IssuedTokens>> refresh(std::string refresh_token,
                                                         RefreshFlavor flavor);

    // Ends the session behind `identity` and deletes its device (POST /logout).
    boost::asio::awaitable<Result<void>> logout(const Identity& identity);

    // Ends every session of the user and deletes all their devices (POST /logout/all).
    boost::asio::awaitable<Result<void>> logout_all(const std::string& user_id);

    // Ends sessions of `user_id` in one write job: every live session of the user (of
    // `device_id` only, when given) except `keep_session_id`, for `reason`; their token rows are
    // deleted. With `delete_devices`, also deletes the device rows: `device_id` when given,
    // otherwise every device of the user except the one `keep_session_id` belongs to. Records
    // a "sessions_revoked" security event when it ended at least one session. The token cache
    // learns of every revocation before this returns. Returns how many sessions it ended.
    // Errors: 503 when storage is unavailable.
    boost::asio::awaitable<Result<std::size_t>> end_sessions(
        std::string user_id, std::optional<std::string> device_id,
        std::optional<std::int64_t> keep_session_id, storage::RevokeReason reason,
        bool delete_devices);

    // Deletes the listed devices of `user_id` in ONE write job, however many there are: every
    // live session of those devices ends (kLogout; token rows deleted), the device rows go, and
    // a "device_deleted" security event is recorded for each device that existed. Ids that name
    // no device (already gone) are skipped; duplicates count once. The token cache learns of
    // every revocation before this returns. Returns how many devices were deleted. Errors: 503
    // when storage is unavailable.
    boost::asio::awaitable<Result<std::size_t>> end_device_sessions(
        std::string user_id, std::vector<std::string> device_ids);

    // Loads every usable access token into the cache (start-up). Blocking.
    Result<std::size_t> warm_cache();

    const TokensConfig& config() const { return config_; }

    // Makes refresh() draw from the per-device refresh bucket (429 when spent; nothing
    // changes). `limiter` must outlive this service; call before serving. Null: no limit.
    void set_rate_limiter(RateLimiter* limiter) { limiter_ = limiter; }

private:
    struct RefreshResult;
    std::variant<Identity, Error, AuthNeedsStorage> judge(const auth::CachedAccessToken& token,
                                                          const storage::TokenHash& hash,
                                                          bool allow_expired) const;
    std::int64_t access_expiry(std::int64_t now, bool refreshable, std::int64_t ends_ts) const;
    // One refresh's write job. `rate_decision` belongs to the request and outlives the job's
    // runs: a backend that runs the job again (a lost serialization race) reuses the first
    // run's rate-limit decision instead of drawing a second token from the device's budget.
    Result<RefreshResult> refresh_in_txn(storage::WriteTxn& txn, const std::string& token,
                                         const storage::TokenHash& hash, RefreshFlavor flavor,
                                         std::optional<Result<void>>& rate_decision);

    storage::Database& db_;
    const auth::TokenHasher& hasher_;
    const auth::SuccessorSealer& sealer_;
    auth::TokenCache& cache_;
    const Clock& clock_;
    TokensConfig config_;
    RateLimiter* limiter_ = nullptr;  // set before serving, then read-only
};

// The soft_logout answer for a session that ended for `reason`: true when the user may sign in
// again into the same device and keep its state (reuse detected, lifetime reached).
bool soft_logout_for(storage::RevokeReason reason);

}  // namespace myelin::service
