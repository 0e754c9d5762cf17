#pragma once

// User-Interactive Authentication: one engine for every endpoint that needs it (/register,
// /account/password, /account/deactivate, DELETE /devices/{id}, /delete_devices). A session
// starts with the first request (401 with flows, params and session id), is bound to the
// endpoint and the user it started for, remembers completed stages, and expires after
// 15 minutes. Stages: m.login.password (wrong password: 401 with flows and errcode
// M_FORBIDDEN), m.login.dummy, m.login.registration_token (registration only). A session is
// used up by the request it authorizes: it cannot authorize a second one.
//
// Sessions live in the database (storage::UiaSessionRecord), not in this process, so that the
// requests of one flow may reach different server processes sharing the database (behind a
// round-robin load balancer). Each step reads the session once and writes once: a completed
// stage is stored with a compare-and-swap on the completed list, and the request that completes
// a flow uses the session up in the same write job (a conditional update that exactly one
// request on any process can win). A registration token stage reserves the use and records it
// on the session in one job. Expired rows are deleted by Housekeeping (prune_expired), which
// releases the reservations they held.
//
// Thread-safety: all methods may be called concurrently from any thread.

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include "myelin/auth/password_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class RegistrationTokens;

// Stage types.
inline constexpr std::string_view kStagePassword = "m.login.password";
inline constexpr std::string_view kStageDummy = "m.login.dummy";
inline constexpr std::string_view kStageRegistrationToken = "m.login.registration_token";

// What one UIA-protected request asks for.
struct UiaChallenge {
    // Binds the session: "POST /register", "POST /account/password", "DELETE /devices/ABC", ...
    std::string endpoint;
    // The user the session is for (the authenticated caller); empty for registration (no user
    // yet). m.login.password is only possible with a user, and only for that user.
    std::string user_id;
    // The flows offered, each a list of stage types in order, e.g. {{"m.login.password"}}.
    std::vector<std::vector<std::string>> flows;
    // True only for registration: the one place m.login.registration_token is accepted.
    bool registration = false;
};

// A completed UIA: the request may proceed.
struct UiaCompletion {
    std::string session_id;
    // The registration token the session reserved (pending + 1), if its flow had that stage.
    // The caller owns the reservation: RegistrationTokens::complete once the account exists,
    // or RegistrationTokens::release if the request fails after all.
    std::optional<std::string> registration_token;
};

class UiaEngine {
public:
    // Sessions last this long from their first request.
    static constexpr std::int64_t kSessionLifetimeMs = 15 * 60 * 1000;
    // At most this many live (unfinished, unexpired) sessions in the database, counting every
    // process; beyond it new sessions are refused with 503. Each engine recounts at most once
    // per kRecountIntervalMs and adds the sessions it opened since, so processes together may
    // overshoot by what the others open within that interval.
    static constexpr std::int64_t kMaxSessions = 100'000;
    static constexpr std::int64_t kRecountIntervalMs = 1000;
    // prune_expired batches of expire_sessions().
    static constexpr int kPruneBatch = 10'000;

    // `server_name` resolves m.login.password identifiers. `registration_tokens` may be null
    // when no flow ever offers m.login.registration_token. `max_sessions` (> 0) is the bound
    // above (tests lower it). Every reference must outlive the engine.
    UiaEngine(const Clock& clock, auth::PasswordHasher& hasher, storage::Database& db,
              RegistrationTokens* registration_tokens, std::string server_name,
              std::int64_t max_sessions = kMaxSessions);
    ~UiaEngine();
    UiaEngine(const UiaEngine&) = delete;
    UiaEngine& operator=(const UiaEngine&) = delete;

    // Checks the request's `auth` object (nullptr when absent) against `challenge`. Success: a
    // flow is complete and the session is used up. Errors: 401 with the UIA body (flows,
    // params, session, completed; plus errcode/error after a failed attempt: M_FORBIDDEN for a
    // wrong password, a password of another user or an invalid registration token,
    // M_UNRECOGNIZED for a stage that is not offered); 400 M_UNKNOWN for an unknown, expired or
    // used-up session; 403 M_FORBIDDEN when the session was started for another endpoint or
    // user; 400 M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM for a malformed auth object; 429
    // when the account's failed-login budget is spent; 503 when hashing or storage is overloaded
    // or too many sessions are open. Never succeeds without `auth`. `auth` is only read before
    // the first suspension, so it may point into the caller's frame.
    boost::asio::awaitable<Result<UiaCompletion>> authenticate(const boost::json::object* auth,
                                                               UiaChallenge challenge);

    // Inside `txn`: deletes up to `limit` sessions expired at `now_ms` (oldest first, finished
    // or not) and releases the registration token reservations the unfinished ones held.
    // Returns how many sessions were deleted. For Housekeeping and expire_sessions().
    static Result<std::int64_t> prune_expired(storage::WriteTxn& txn, std::int64_t now_ms,
                                              int limit);

    // Deletes every session expired now (releasing their reservations) in write jobs of at
    // most kPruneBatch, blocking until done; returns how many. Housekeeping does this in the
    // server; for tests and tools. Never call it from a network thread.
    Result<std::int64_t> expire_sessions();

    // Makes wrong passwords draw from the account's failed-login budget, the same one /login
    // uses (429 once spent). `limiter` must outlive the engine; call before serving.
    void set_rate_limiter(RateLimiter* limiter) { limiter_ = limiter; }

    // Live sessions in the database, of every process (blocks on a storage read; 0 when it
    // fails). For tests; never call it from a network thread.
    std::size_t session_count() const;

private:
    using Session = storage::UiaSessionRecord;
    struct StageCommit;
    struct StageOutcome;

    boost::asio::awaitable<Result<Session>> open_session(UiaChallenge challenge, std::int64_t now);
    boost::asio::awaitable<Result<void>> admit_new_session(std::int64_t now);
    Error challenge_error(const Session& session, std::string_view errcode = {},
                          std::string_view message = {}) const;
    // true: the password is the user's; false: it is not (or no such usable account).
    boost::asio::awaitable<Result<bool>> check_password(std::string user_id, std::string password);
    boost::asio::awaitable<Result<StageOutcome>> commit_stage(StageCommit commit);
    // The write job of commit_stage: checks the session again, reserves the token (if any),
    // stores the stage and, when it completes a flow, uses the session up.
    static Result<StageOutcome> run_stage_commit(storage::WriteTxn& txn, const StageCommit& c);

    const Clock& clock_;
    auth::PasswordHasher& hasher_;
    storage::Database& db_;
    RegistrationTokens* registration_tokens_;
    const std::string server_name_;
    const std::int64_t max_sessions_;
    RateLimiter* limiter_ = nullptr;  // set before serving, then read-only

    // The bound on live sessions: the last count read from the database and the sessions this
    // engine opened since.
    std::mutex count_mu_;
    bool counted_ = false;            // guarded by count_mu_
    std::int64_t counted_at_ms_ = 0;  // guarded by count_mu_
    std::int64_t live_counted_ = 0;   // guarded by count_mu_
    std::int64_t opened_since_ = 0;   // guarded by count_mu_
};

}  // namespace myelin::service
