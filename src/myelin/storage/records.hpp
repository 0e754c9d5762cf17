#pragma once

// The rows of the account and token store, as plain values shared by every storage backend and
// the services above them. No SQL types here. Timestamps are milliseconds since the epoch;
// 0 means "none" for optional deadlines.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace myelin::storage {

// A keyed hash of a token (BLAKE2b-256 keyed with the server secret). Tokens themselves are
// never stored.
using TokenHash = std::array<std::uint8_t, 32>;

struct UserRecord {
    std::string user_id;        // full MXID, e.g. "@alice:example.org"
    std::string password_hash;  // argon2id encoded string; empty: no password login
    bool is_guest = false;
    bool is_admin = false;
    bool deactivated = false;
    std::int64_t created_ts = 0;
};

struct DeviceRecord {
    std::string user_id;
    std::string device_id;
    std::optional<std::string> display_name;
    std::int64_t created_ts = 0;
    std::int64_t last_seen_ts = 0;  // 0: never seen
    std::string last_seen_ip;       // empty: never seen
};

// Why a session ended. kNone: live.
enum class RevokeReason : int {
    kNone = 0,
    kLogout = 1,        // the client logged out, or the device was deleted
    kReplaced = 2,      // a new login took over the same device_id
    kRefreshReuse = 3,  // a rotated-out refresh token was presented again (theft suspected)
    kAdmin = 4,         // an operator revoked it
    kExpired = 5,       // it ran past its idle or absolute lifetime
    kPasswordChange = 6,
    kDeactivated = 7,
};

// One sign-in on one device: the lineage of token pairs that refreshes produce. Generation g
// is the g-th pair (login = 0). `current_generation` is the newest pair minted;
// `used_generation` is the newest pair a client has proven it holds (by using its access
// token or presenting its refresh token). Invariant: used <= current <= used + 1.
struct SessionRecord {
    std::int64_t session_id = 0;
    std::string user_id;
    std::string device_id;
    bool refreshable = false;  // the client opted into refresh tokens
    bool is_guest = false;
    std::int64_t created_ts = 0;
    std::int64_t ends_ts = 0;  // absolute end of the session (fixed from sign-in); 0: none
    std::int64_t current_generation = 0;
    std::int64_t used_generation = 0;
    std::int64_t revoked_ts = 0;  // 0: live
    RevokeReason revoked_reason = RevokeReason::kNone;
};

struct AccessTokenRecord {
    TokenHash token_hash{};
    std::int64_t session_id = 0;
    std::int64_t generation = 0;
    std::int64_t issued_ts = 0;
    std::int64_t expires_ts = 0;  // 0: does not expire
};

struct RefreshTokenRecord {
    TokenHash token_hash{};
    std::int64_t session_id = 0;
    std::int64_t generation = 0;
    std::int64_t issued_ts = 0;
    std::int64_t expires_ts = 0;  // 0: does not expire (idle timeout off)
    // The successor pair, sealed under a key only the raw refresh token derives (see
    // auth/successor_seal.hpp). Present from the rotation until the successor is first used.
    std::vector<std::uint8_t> sealed_successor;
};

// An access token joined with its session: all that authentication needs.
struct AccessTokenLookup {
    AccessTokenRecord token;
    SessionRecord session;
};

// A refresh token joined with its session: all that a refresh needs.
struct RefreshTokenLookup {
    RefreshTokenRecord token;
    SessionRecord session;
};

// One refresh-token rotation of a session, as WriteTxn::rotate_session applies it: the
// compare-and-swap of the session's generations, the new token pair, and the sealed successor
// left on the rotated-out refresh token.
struct SessionRotation {
    std::int64_t session_id = 0;
    std::int64_t expected_current = 0;  // the session's current_generation as read
    std::int64_t new_current = 0;
    std::int64_t new_used = 0;
    // The new pair. Their session_id is ignored (they join `session_id`); the refresh token is
    // stored without a sealed successor whatever its record holds.
    AccessTokenRecord access;
    RefreshTokenRecord refresh;
    // The presented (rotated-out) refresh token of this session, and the successor pair sealed
    // for its idempotent retry; empty (the legacy endpoint, which has no retry) leaves it none.
    TokenHash old_refresh_hash{};
    std::vector<std::uint8_t> old_sealed_successor;
};

// A registration token (`m.login.registration_token`), chosen by the operator. `pending` counts
// registrations that have completed the token stage but not yet created their account;
// `completed` counts accounts created with it. It is usable while pending + completed is below
// uses_allowed (when set) and expiry_ts (when set) is in the future.
struct RegistrationTokenRecord {
    std::string token;
    std::optional<std::int64_t> uses_allowed;  // nullopt: unlimited
    std::int64_t pending = 0;
    std::int64_t completed = 0;
    std::int64_t expiry_ts = 0;  // 0: never expires
    std::int64_t created_ts = 0;
};

// One entry of the revocation log: a session that was revoked, in the order the revocations
// committed. Other processes sharing the database (the `myelin admin` CLI) write it; the server
// follows it to evict revoked sessions from its token cache.
struct RevocationRecord {
    std::int64_t id = 0;  // increases with every entry
    std::int64_t session_id = 0;
    std::string user_id;    // of the session
    std::string device_id;  // of the session
    RevokeReason reason = RevokeReason::kNone;
    std::int64_t ts = 0;
};

struct SecurityEventRecord {
    std::int64_t id = 0;
    std::string user_id;
    std::string device_id;  // empty when not tied to a device
    std::int64_t ts = 0;
    std::string kind;    // e.g. "login", "refresh_reuse_detected", "session_revoked"
    std::string detail;  // human-readable, never a secret
};

// A User-Interactive Authentication session (service/uia.hpp). Kept in the database so that the
// requests of one UIA flow may reach different server processes sharing it. Ephemeral: a row
// lives for the session's lifetime (15 minutes) and is then deleted by housekeeping; nothing else
// refers to it.
struct UiaSessionRecord {
    std::string session_id;  // 32 random characters of [A-Za-z0-9]
    std::string endpoint;    // what it authorizes: "POST /register", "DELETE /devices/ABC", ...
    std::string user_id;     // whom it authorizes; empty for registration
    std::vector<std::vector<std::string>> flows;  // the flows offered, each a list of stages
    bool registration = false;
    std::int64_t created_ts = 0;
    std::vector<std::string> completed;  // the stages completed so far, in order
    // A registration token use this session reserved (pending + 1), held until the session is
    // used up (then the request it authorized owns it) or expires (then it is released).
    std::optional<std::string> registration_token;
    bool finished = false;  // used up by the one request it authorized
};

// What pruning expired UIA sessions deleted.
struct UiaPruneResult {
    std::int64_t deleted = 0;
    // The registration tokens that deleted, unfinished sessions held, one entry per reservation
    // (a token may repeat): the caller releases them in the same write job.
    std::vector<std::string> held_tokens;
};

}  // namespace myelin::storage
