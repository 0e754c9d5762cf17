#pragma once

// Accounts: registration, password login and username availability. Password hashing runs on
// the PasswordHasher's pool and storage on the database's threads; nothing here blocks a
// network thread. Thread-safety: all methods may be called concurrently.

#include <cstdint>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include "myelin/auth/password_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

struct RegistrationRequest {
    bool guest = false;
    std::optional<std::string> username;
    std::optional<std::string> password;
    std::optional<std::string> device_id;
    std::optional<std::string> initial_device_display_name;
    bool inhibit_login = false;
    bool refresh_token = false;
    std::optional<boost::json::object> auth;  // the UIA `auth` object, if sent
};

struct RegistrationResult {
    std::string user_id;
    std::optional<IssuedTokens> tokens;  // absent with inhibit_login
};

struct LoginRequest {
    std::string user;  // localpart or full user ID, as typed
    std::string password;
    std::optional<std::string> device_id;
    std::optional<std::string> initial_device_display_name;
    bool refresh_token = false;
};

class AccountService {
public:
    AccountService(storage::Database& db, auth::PasswordHasher& hasher, SessionService& sessions,
                   UiaEngine& uia, RegistrationTokens& registration_tokens, const Config& config,
                   const Clock& clock);

    // POST /register. Username checks run before UIA (400 M_USER_IN_USE / M_INVALID_USERNAME),
    // then UIA (401; flows [[m.login.dummy]], or [[m.login.registration_token]] when
    // [registration] requires_token), then the account is created and a registration token
    // used completes in the same commit (released again if the registration fails after UIA).
    // 403 M_FORBIDDEN when registration (or guest access) is off; 400 M_INVALID_PARAM for an
    // over-long password; 503 when overloaded. Guests skip UIA.
    boost::asio::awaitable<Result<RegistrationResult>> register_account(
        RegistrationRequest request);

    // POST /login with m.login.password. 403 M_FORBIDDEN for a wrong user or password (the same
    // work and answer whether or not the user exists), 403 M_USER_DEACTIVATED, 400
    // M_INVALID_PARAM for an over-long password, 503 when overloaded. Signing in with an
    // existing device_id replaces that device's tokens. Upgrades an outdated password hash.
    boost::asio::awaitable<Result<IssuedTokens>> login(LoginRequest request);

    // GET /register/available: 200 when free, 400 M_USER_IN_USE / M_INVALID_USERNAME.
    boost::asio::awaitable<Result<void>> check_available(std::string username);

    // POST /account/password, after UIA: sets a new password hash and records a
    // "password_change" event; with `logout_devices`, ends every session of the user except
    // `keep_session_id` (the caller's) and deletes those devices. Errors: 400 M_INVALID_PARAM
    // for an over-long password, 404 M_NOT_FOUND for an unknown user, 503 when overloaded.
    boost::asio::awaitable<Result<void>> change_password(std::string user_id,
                                                         std::string new_password,
                                                         bool logout_devices,
                                                         std::int64_t keep_session_id);

    // POST /account/deactivate (after UIA) and the admin: marks the account deactivated for
    // good (login answers 403 M_USER_DEACTIVATED, the user ID can never be registered again),
    // records a "deactivated" event, then ends all its sessions and deletes all its devices.
    // Idempotent. Errors: 404 M_NOT_FOUND for an unknown user, 503.
    boost::asio::awaitable<Result<void>> deactivate(std::string user_id);

    // Admin: creates an account without UIA or a device. `localpart` follows the registration
    // rules (lower-cased, grammar checked); `password` nullopt: no password login. Returns the
    // user ID. Errors: 400 M_INVALID_USERNAME / M_USER_IN_USE / M_INVALID_PARAM (over-long
    // password), 503.
    boost::asio::awaitable<Result<std::string>> create_user(std::string localpart,
                                                            std::optional<std::string> password,
                                                            bool admin);

    // Admin: sets a new password and ends every session of the user (reason kAdmin), deleting
    // the devices; records a "password_reset" event. Errors: 400 M_INVALID_PARAM, 404
    // M_NOT_FOUND, 503.
    boost::asio::awaitable<Result<void>> reset_password(std::string user_id,
                                                        std::string new_password);

    // Makes login() enforce the per-account failed-login budget (429 M_LIMIT_EXCEEDED before
    // any hashing once it is spent; exempt users never). `limiter` must outlive this service;
    // call before serving. Null: no limit.
    void set_rate_limiter(RateLimiter* limiter) { limiter_ = limiter; }

private:
    Result<void> check_password_length(const std::string& password) const;

    storage::Database& db_;
    auth::PasswordHasher& hasher_;
    SessionService& sessions_;
    UiaEngine& uia_;
    RegistrationTokens& registration_tokens_;
    const Config& config_;
    const Clock& clock_;
    RateLimiter* limiter_ = nullptr;  // set before serving, then read-only
};

}  // namespace myelin::service
