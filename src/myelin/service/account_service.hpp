#pragma once

// Accounts: registration, password login and username availability. Password hashing runs on
// the PasswordHasher's pool and storage on the database's threads; nothing here blocks a
// network thread. Thread-safety: all methods may be called concurrently.

#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include "myelin/auth/password_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
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
                   UiaSessions& uia, const Config& config, const Clock& clock);

    // POST /register. Username checks run before UIA (400 M_USER_IN_USE / M_INVALID_USERNAME),
    // then UIA (401), then the account is created. 403 M_FORBIDDEN when registration (or guest
    // access) is off; 400 M_INVALID_PARAM for an over-long password; 503 when overloaded.
    boost::asio::awaitable<Result<RegistrationResult>> register_account(
        RegistrationRequest request);

    // POST /login with m.login.password. 403 M_FORBIDDEN for a wrong user or password (the same
    // work and answer whether or not the user exists), 403 M_USER_DEACTIVATED, 400
    // M_INVALID_PARAM for an over-long password, 503 when overloaded. Signing in with an
    // existing device_id replaces that device's tokens. Upgrades an outdated password hash.
    boost::asio::awaitable<Result<IssuedTokens>> login(LoginRequest request);

    // GET /register/available: 200 when free, 400 M_USER_IN_USE / M_INVALID_USERNAME.
    boost::asio::awaitable<Result<void>> check_available(std::string username);

private:
    Result<void> check_password_length(const std::string& password) const;

    storage::Database& db_;
    auth::PasswordHasher& hasher_;
    SessionService& sessions_;
    UiaSessions& uia_;
    const Config& config_;
    const Clock& clock_;
};

}  // namespace myelin::service
