#pragma once

// User-Interactive Authentication: one engine for every endpoint that needs it (/register,
// /account/password, /account/deactivate, DELETE /devices/{id}, /delete_devices). A session
// starts with the first request (401 with flows, params and session id), is bound to the
// endpoint and the user it started for, remembers completed stages, and expires after
// 15 minutes. Stages: m.login.password (wrong password: 401 with flows and errcode
// M_FORBIDDEN), m.login.dummy, m.login.registration_token (registration only). A session is
// used up by the request it authorizes: it cannot authorize a second one.
// Thread-safety: all methods may be called concurrently from any thread.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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
    // At most this many live sessions; beyond it new sessions are refused with 503.
    static constexpr std::size_t kMaxSessions = 100'000;

    // `server_name` resolves m.login.password identifiers. `registration_tokens` may be null
    // when no flow ever offers m.login.registration_token. Every reference must outlive the
    // engine.
    UiaEngine(const Clock& clock, auth::PasswordHasher& hasher, storage::Database& db,
              RegistrationTokens* registration_tokens, std::string server_name);
    ~UiaEngine();
    UiaEngine(const UiaEngine&) = delete;
    UiaEngine& operator=(const UiaEngine&) = delete;

    // Checks the request's `auth` object (nullptr when absent) against `challenge`. Success: a
    // flow is complete and the session is used up. Errors: 401 with the UIA body (flows,
    // params, session, completed; plus errcode/error after a failed attempt: M_FORBIDDEN for a
    // wrong password, a password of another user or an invalid registration token,
    // M_UNRECOGNIZED for a stage that is not offered); 400 M_UNKNOWN for an unknown or expired
    // session; 403 M_FORBIDDEN when the session was started for another endpoint or user;
    // 400 M_BAD_JSON / M_MISSING_PARAM / M_INVALID_PARAM for a malformed auth object; 429 when
    // the account's failed-login budget is spent; 503 when hashing or storage is overloaded
    // or too many sessions are open. Never succeeds without `auth`. `auth` is only read before
    // the first suspension, so it may point into the caller's frame.
    boost::asio::awaitable<Result<UiaCompletion>> authenticate(const boost::json::object* auth,
                                                               UiaChallenge challenge);

    // Drops expired sessions (releasing registration tokens they held). authenticate() calls it
    // now and then by itself; callable at any time.
    void expire_sessions();

    // Makes wrong passwords draw from the account's failed-login budget, the same one /login
    // uses (429 once spent). `limiter` must outlive the engine; call before serving.
    void set_rate_limiter(RateLimiter* limiter) { limiter_ = limiter; }

    // Live sessions (for tests and metrics).
    std::size_t session_count() const;

private:
    struct Session;
    struct Stage;
    Result<std::shared_ptr<Session>> open_session(const UiaChallenge& challenge);
    Error challenge_error(const Session& session, std::string_view errcode = {},
                          std::string_view message = {}) const;
    std::vector<std::string> completed_of(const Session& session) const;
    bool flow_complete(const Session& session) const;
    boost::asio::awaitable<Result<void>> check_password(std::shared_ptr<Session> session,
                                                        std::string identified_user,
                                                        std::string password);
    boost::asio::awaitable<Result<void>> check_registration_token(std::shared_ptr<Session> session,
                                                                  std::string token);
    void expire_locked(std::int64_t now, std::vector<std::string>& to_release);
    void release_tokens(const std::vector<std::string>& tokens);

    const Clock& clock_;
    auth::PasswordHasher& hasher_;
    storage::Database& db_;
    RegistrationTokens* registration_tokens_;
    const std::string server_name_;
    RateLimiter* limiter_ = nullptr;  // set before serving, then read-only
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<Session>> sessions_;  // guarded by mu_
    std::int64_t last_sweep_ms_ = 0;                                      // guarded by mu_
};

}  // namespace myelin::service
