#pragma once

// The operator's view of accounts, shared by the `myelin admin` CLI and the admin HTTP API
// (/_myelin/admin/v1/...): looking up a user, their devices and security events, and revoking
// their sessions. Account changes (create, reset password, deactivate) and registration tokens
// live in AccountService and RegistrationTokens; both front ends call those directly.
// Every revocation goes through SessionService::end_sessions, so it lands in the revocation log
// (and a running server's token cache within a poll interval, whichever process made it) and
// records a "sessions_revoked" security event.
// Thread-safety: all methods may be called concurrently; storage runs on the database's
// threads, never the caller's.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class AdminService {
public:
    // Most security events one call returns.
    static constexpr int kMaxEvents = 1000;

    // `db` and `sessions` must outlive this object.
    AdminService(storage::Database& db, SessionService& sessions) : db_(db), sessions_(sessions) {}

    // The user's record (the password hash is the caller's to keep to itself). Errors: 404
    // M_NOT_FOUND, 503.
    boost::asio::awaitable<Result<storage::UserRecord>> user(std::string user_id);

    // The user's devices, ordered by device_id. Errors: 404 M_NOT_FOUND (no such user), 503.
    boost::asio::awaitable<Result<std::vector<storage::DeviceRecord>>> devices(std::string user_id);

    // The user's security events, newest first, at most `limit` (clamped to 1..kMaxEvents).
    // Errors: 404 M_NOT_FOUND (no such user), 503.
    boost::asio::awaitable<Result<std::vector<storage::SecurityEventRecord>>> security_events(
        std::string user_id, int limit);

    // Ends every live session of the user (of `device_id` only, when given) for reason kAdmin;
    // the devices stay (their owner can sign in to them again). Returns how many sessions
    // ended. Errors: 404 M_NOT_FOUND (no such user or device), 503.
    boost::asio::awaitable<Result<std::size_t>> revoke(std::string user_id,
                                                       std::optional<std::string> device_id);

private:
    storage::Database& db_;
    SessionService& sessions_;
};

}  // namespace myelin::service
