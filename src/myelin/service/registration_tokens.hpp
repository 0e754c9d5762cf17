#pragma once

// Registration tokens (m.login.registration_token, spec v1.2): operator-made tokens with an
// optional number of allowed uses and an optional expiry. A token is usable while it has not
// expired and uses_allowed - pending - completed > 0. The UIA stage reserves a use (pending + 1)
// in the same write job that checks it, so concurrent registrations can never exceed
// uses_allowed; the registration then completes it (pending - 1, completed + 1), or the
// reservation is released (pending - 1) when the registration fails or its UIA session expires.
// The admin CLI and HTTP API create, list and delete tokens through this class.
//
// Thread-safety: all methods may be called concurrently from any thread. The awaitable forms
// run on the storage threads; the _sync forms block the caller (CLI, start-up and tests only).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class RegistrationTokens {
public:
    // Generated tokens are this long, from [A-Za-z0-9].
    static constexpr std::size_t kGeneratedLength = 16;
    // The spec's limit: at most 64 characters of [A-Za-z0-9._~-].
    static constexpr std::size_t kMaxLength = 64;

    // `db` and `clock` must outlive this object.
    RegistrationTokens(storage::Database& db, const Clock& clock) : db_(db), clock_(clock) {}

    // True when `token` follows the spec's grammar (1 to 64 characters of [A-Za-z0-9._~-]).
    static bool well_formed(std::string_view token);
    // True when the token can take one more registration at `now_ms`: not expired, and
    // uses_allowed (if set) - pending - completed > 0.
    static bool usable(const storage::RegistrationTokenRecord& token, std::int64_t now_ms);

    // GET .../registration_token/validity: whether `token` exists and is usable now (a
    // snapshot; a malformed token is simply invalid). Errors: 503 when storage is unavailable.
    boost::asio::awaitable<Result<bool>> validate(std::string token);

    // Reserves one use (pending + 1) if the token is usable, in one write job. Returns false
    // (and changes nothing) when it is unknown, malformed, expired or used up. Errors: 503.
    boost::asio::awaitable<Result<bool>> reserve(std::string token);
    // The same inside `txn` (for UIA: the reservation and the session that holds it commit
    // together), with `now_ms` deciding expiry.
    static Result<bool> reserve_in(storage::WriteTxn& txn, std::string_view token,
                                   std::int64_t now_ms);

    // A reserved use became an account: pending - 1, completed + 1. Errors: 503.
    boost::asio::awaitable<Result<void>> complete(std::string token);
    // Adds the completion to `txn` (for registration: the account and the completion commit
    // together). A token deleted meanwhile is no error.
    static Result<void> complete_in(storage::WriteTxn& txn, std::string_view token);

    // A reserved use was not used (the registration failed): pending - 1. Errors: 503.
    boost::asio::awaitable<Result<void>> release(std::string token);
    // The same inside `txn` (for UIA: an expired session's reservation goes with its row).
    // Returns false if there is no such token (deleted meanwhile: no error).
    static Result<bool> release_in(storage::WriteTxn& txn, std::string_view token);
    // The same without waiting (from non-coroutine code such as UIA session expiry); a
    // failure is logged.
    void release_detached(std::string token);

    // Creates a token. `token`: the exact token (nullopt or empty: 16 random [A-Za-z0-9]
    // characters); `uses_allowed`: nullopt for unlimited, else >= 0; `expiry_ts`: ms since the
    // epoch, 0 for never, else in the future. Returns the stored record. Errors: 400
    // M_INVALID_PARAM for a malformed token, a negative uses_allowed, a past expiry or a token
    // that exists already; 503.
    boost::asio::awaitable<Result<storage::RegistrationTokenRecord>> create(
        std::optional<std::string> token, std::optional<std::int64_t> uses_allowed,
        std::int64_t expiry_ts);
    Result<storage::RegistrationTokenRecord> create_sync(std::optional<std::string> token,
                                                         std::optional<std::int64_t> uses_allowed,
                                                         std::int64_t expiry_ts);

    // Every token (expired and used-up ones included), ordered by token. Errors: 503.
    boost::asio::awaitable<Result<std::vector<storage::RegistrationTokenRecord>>> list();
    Result<std::vector<storage::RegistrationTokenRecord>> list_sync();

    // Deletes a token. Returns false if there was none. Errors: 503.
    boost::asio::awaitable<Result<bool>> remove(std::string token);
    Result<bool> remove_sync(std::string token);

private:
    // Checks the arguments of create() and builds the record (generating the token if asked).
    Result<storage::RegistrationTokenRecord> prepare(std::optional<std::string> token,
                                                     std::optional<std::int64_t> uses_allowed,
                                                     std::int64_t expiry_ts) const;

    storage::Database& db_;
    const Clock& clock_;
};

}  // namespace myelin::service
