#include "myelin/storage/postgres/pg_txn.hpp"

#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "myelin/storage/postgres/pg_rows.hpp"
#include "myelin/storage/row_readers.hpp"

namespace myelin::storage::pg {

namespace {

// ---- SQL ----------------------------------------------------------------------------------
// Column lists are spelled out in every statement in the order storage/row_readers.hpp reads.

constexpr std::string_view kFindUser =
    "SELECT user_id, password_hash, is_guest, is_admin, deactivated, created_ts "
    "FROM users WHERE user_id = $1";
constexpr std::string_view kInsertUser =
    "INSERT INTO users (user_id, password_hash, is_guest, is_admin, deactivated, created_ts) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING";
constexpr std::string_view kSetPasswordHash =
    "UPDATE users SET password_hash = $2 WHERE user_id = $1";

constexpr std::string_view kFindDevice =
    "SELECT user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip "
    "FROM devices WHERE user_id = $1 AND device_id = $2";
constexpr std::string_view kListDevices =
    "SELECT user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip "
    "FROM devices WHERE user_id = $1 ORDER BY device_id";
constexpr std::string_view kEnsureDevice =
    "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, "
    "last_seen_ip) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, device_id) DO NOTHING";
constexpr std::string_view kDeleteDevice =
    "DELETE FROM devices WHERE user_id = $1 AND device_id = $2";

#define MYELIN_PG_SESSION_COLUMNS                                                  \
    "session_id, user_id, device_id, refreshable, is_guest, created_ts, ends_ts, " \
    "current_generation, used_generation, revoked_ts, revoked_reason "
#define MYELIN_PG_JOINED_SESSION_COLUMNS                                              \
    "s.session_id, s.user_id, s.device_id, s.refreshable, s.is_guest, s.created_ts, " \
    "s.ends_ts, s.current_generation, s.used_generation, s.revoked_ts, s.revoked_reason "

constexpr std::string_view kFindSession =
    "SELECT " MYELIN_PG_SESSION_COLUMNS "FROM sessions WHERE session_id = $1";
constexpr std::string_view kLiveSessionsOfUser =
    "SELECT " MYELIN_PG_SESSION_COLUMNS
    "FROM sessions WHERE user_id = $1 AND revoked_ts = 0 ORDER BY session_id";
constexpr std::string_view kLiveSessionsOfDevice =
    "SELECT " MYELIN_PG_SESSION_COLUMNS
    "FROM sessions WHERE user_id = $1 AND device_id = $2 AND revoked_ts = 0 "
    "ORDER BY session_id";
constexpr std::string_view kInsertSession =
    "INSERT INTO sessions (user_id, device_id, refreshable, is_guest, created_ts, ends_ts, "
    "current_generation, used_generation, revoked_ts, revoked_reason) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING session_id";
// The rotation's compare-and-swap: one statement, so that a concurrent one is decided by the
// row lock (and, under SERIALIZABLE, a lost race becomes a retried job, never a lost update).
// A change to a session that ends tokens also NOTIFYs the processes sharing the database (their
// token caches follow it: pg_session_feed.hpp); a NOTIFY is delivered only when its transaction
// commits. Only an advance of used_generation ends tokens (a cache judges a token by it alone),
// so a refresh that only mints the next pair (v3: used stays) sends nothing: PostgreSQL
// serialises the commits of transactions that NOTIFY, and the refresh is the hot write.
constexpr std::string_view kUpdateSessionGenerations =
    "UPDATE sessions AS s SET current_generation = $3, used_generation = $4 "
    "FROM (SELECT used_generation AS old_used FROM sessions WHERE session_id = $1) AS o "
    "WHERE s.session_id = $1 AND s.current_generation = $2 AND s.revoked_ts = 0 "
    "RETURNING (SELECT pg_notify('myelin_sessions', 'a ' || s.session_id || ' ' || "
    "s.current_generation || ' ' || s.used_generation) WHERE s.used_generation > o.old_used)";
// A whole refresh-token rotation in one statement (one round trip instead of six): the CAS of
// kUpdateSessionGenerations (with its NOTIFY under the same rule: only when used_generation
// moves, i.e. a legacy rotation; a v3 rotation keeps used and sends nothing), then, only when it
// matched (each part reads `cas`), the new token pair, the wipe of the session's other sealed
// successors and the seal on the rotated-out token ($14). Every part sees the statement's one
// snapshot, so no row may be changed twice: the wipe leaves out the rotated-out token, which the
// seal sets (to NULL for the legacy endpoint), and neither can see the rows being inserted. The
// parameters of the INSERT ... SELECT lists are cast: PostgreSQL infers no types there.
constexpr std::string_view kRotateSession =
    "WITH cas AS (UPDATE sessions AS s SET current_generation = $3, used_generation = $4 "
    "FROM (SELECT used_generation AS old_used FROM sessions WHERE session_id = $1) AS o "
    "WHERE s.session_id = $1 AND s.current_generation = $2 AND s.revoked_ts = 0 "
    "RETURNING s.session_id, (SELECT pg_notify('myelin_sessions', 'a ' || s.session_id || ' ' || "
    "s.current_generation || ' ' || s.used_generation) WHERE s.used_generation > o.old_used)), "
    "new_access AS (INSERT INTO access_tokens (token_hash, session_id, generation, issued_ts, "
    "expires_ts) SELECT $5::bytea, session_id, $6::bigint, $7::bigint, $8::bigint FROM cas), "
    "new_refresh AS (INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_ts, "
    "expires_ts) SELECT $9::bytea, session_id, $10::bigint, $11::bigint, $12::bigint FROM cas), "
    "wiped AS (UPDATE refresh_tokens SET sealed_successor = NULL WHERE session_id = $1 "
    "AND sealed_successor IS NOT NULL AND token_hash <> $14 AND EXISTS (SELECT 1 FROM cas)), "
    "sealed AS (UPDATE refresh_tokens SET sealed_successor = $13 WHERE token_hash = $14 "
    "AND session_id = $1 AND EXISTS (SELECT 1 FROM cas)) "
    "SELECT count(*) FROM cas";
// Ends a live session and wipes its sealed successors in one statement; returns a row only when
// this call ended it (the revocation must then be logged).
constexpr std::string_view kRevokeSession =
    "WITH wiped AS (UPDATE refresh_tokens SET sealed_successor = NULL "
    "WHERE session_id = $1 AND sealed_successor IS NOT NULL) "
    "UPDATE sessions SET revoked_ts = $2, revoked_reason = $3 "
    "WHERE session_id = $1 AND revoked_ts = 0 "
    "RETURNING session_id, pg_notify('myelin_sessions', 'r ' || session_id || ' ' || "
    "revoked_reason)";

constexpr std::string_view kFindAccessToken =
    "SELECT t.token_hash, t.session_id, t.generation, t.issued_ts, "
    "t.expires_ts, " MYELIN_PG_JOINED_SESSION_COLUMNS
    "FROM access_tokens AS t JOIN sessions AS s ON s.session_id = t.session_id "
    "WHERE t.token_hash = $1";
constexpr std::string_view kLiveAccessTokens =
    "SELECT t.token_hash, t.session_id, t.generation, t.issued_ts, "
    "t.expires_ts, " MYELIN_PG_JOINED_SESSION_COLUMNS
    "FROM access_tokens AS t JOIN sessions AS s ON s.session_id = t.session_id "
    "WHERE s.revoked_ts = 0 AND t.generation >= s.used_generation "
    "ORDER BY t.session_id, t.generation";
constexpr std::string_view kInsertAccessToken =
    "INSERT INTO access_tokens (token_hash, session_id, generation, issued_ts, expires_ts) "
    "VALUES ($1, $2, $3, $4, $5)";
constexpr std::string_view kDeleteSessionTokens =
    "WITH gone AS (DELETE FROM access_tokens WHERE session_id = $1) "
    "DELETE FROM refresh_tokens WHERE session_id = $1";

constexpr std::string_view kFindRefreshToken =
    "SELECT t.token_hash, t.session_id, t.generation, t.issued_ts, t.expires_ts, "
    "t.sealed_successor, " MYELIN_PG_JOINED_SESSION_COLUMNS
    "FROM refresh_tokens AS t JOIN sessions AS s ON s.session_id = t.session_id "
    "WHERE t.token_hash = $1";
constexpr std::string_view kInsertRefreshToken =
    "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_ts, expires_ts, "
    "sealed_successor) VALUES ($1, $2, $3, $4, $5, $6)";
constexpr std::string_view kSetSealedSuccessor =
    "UPDATE refresh_tokens SET sealed_successor = $2 WHERE token_hash = $1";
constexpr std::string_view kWipeSealedSuccessors =
    "UPDATE refresh_tokens SET sealed_successor = NULL "
    "WHERE session_id = $1 AND sealed_successor IS NOT NULL";

constexpr std::string_view kSecurityEvents =
    "SELECT id, user_id, device_id, ts, kind, detail FROM security_events "
    "WHERE user_id = $1 ORDER BY id DESC LIMIT $2";
constexpr std::string_view kInsertSecurityEvent =
    "INSERT INTO security_events (user_id, device_id, ts, kind, detail) "
    "VALUES ($1, $2, $3, $4, $5)";

constexpr std::string_view kSetUserDeactivated =
    "UPDATE users SET deactivated = $2 WHERE user_id = $1";
constexpr std::string_view kSetUserAdmin = "UPDATE users SET is_admin = $2 WHERE user_id = $1";
constexpr std::string_view kSetDeviceDisplayName =
    "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2";
constexpr std::string_view kRecordDeviceActivity =
    "UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 "
    "WHERE user_id = $1 AND device_id = $2 AND last_seen_ts < $3";

constexpr std::string_view kFindRegistrationToken =
    "SELECT token, uses_allowed, pending, completed, expiry_ts, created_ts "
    "FROM registration_tokens WHERE token = $1";
constexpr std::string_view kListRegistrationTokens =
    "SELECT token, uses_allowed, pending, completed, expiry_ts, created_ts "
    "FROM registration_tokens ORDER BY token";
constexpr std::string_view kInsertRegistrationToken =
    "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_ts, "
    "created_ts) VALUES ($1, $2, 0, 0, $3, $4) ON CONFLICT (token) DO NOTHING";
constexpr std::string_view kDeleteRegistrationToken =
    "DELETE FROM registration_tokens WHERE token = $1";
constexpr std::string_view kUpdateRegistrationTokenCounts =
    "UPDATE registration_tokens SET pending = GREATEST(0, pending + $2), "
    "completed = GREATEST(0, completed + $3) WHERE token = $1";

// The advisory lock serialises appends until commit, so that ids become visible in order. The
// subquery (kept apart by OFFSET 0) takes the lock before the row, and with it its id, exists.
constexpr std::string_view kAppendRevocation =
    "INSERT INTO revocation_log (session_id, reason, ts) "
    "SELECT $1::bigint, $2::bigint, $3::bigint "
    "FROM (SELECT pg_advisory_xact_lock(31381409523567) OFFSET 0) AS locked";
// LEFT JOIN: sessions are never deleted today, but should that change, a follower must still see
// every entry (with empty user and device) rather than silently skip one.
constexpr std::string_view kRevocationsSince =
    "SELECT r.id, r.session_id, COALESCE(s.user_id, ''), COALESCE(s.device_id, ''), r.reason, "
    "r.ts FROM revocation_log AS r LEFT JOIN sessions AS s ON s.session_id = r.session_id "
    "WHERE r.id > $1 ORDER BY r.id LIMIT $2";
// Pruned entries count too: a follower primed on an emptied log must not look as if it had
// missed them.
constexpr std::string_view kLatestRevocationId =
    "SELECT GREATEST(COALESCE((SELECT MAX(id) FROM revocation_log), 0), "
    "COALESCE((SELECT through_id FROM revocation_log_pruned WHERE id = 1), 0))";
constexpr std::string_view kRevocationLogPrunedThrough =
    "SELECT COALESCE((SELECT through_id FROM revocation_log_pruned WHERE id = 1), 0)";
constexpr std::string_view kRevokedSessionsAfter =
    "SELECT " MYELIN_PG_SESSION_COLUMNS
    "FROM sessions WHERE session_id > $1 AND revoked_ts <> 0 ORDER BY session_id LIMIT $2";
// Both prunes take the oldest rows through the ts index (migration 4): the work is bounded by
// `limit`, not by the table's size. The log prune raises the pruned-through mark in the same
// statement (a data-modifying CTE runs even though nothing reads it), only when it deleted
// something, and never lowers it; it returns the number of rows deleted.
constexpr std::string_view kPruneRevocationLog =
    "WITH deleted AS (DELETE FROM revocation_log WHERE id IN "
    "(SELECT id FROM revocation_log WHERE ts < $1 ORDER BY ts LIMIT $2) RETURNING id), "
    "marked AS (INSERT INTO revocation_log_pruned (id, through_id) "
    "SELECT 1, MAX(id) FROM deleted HAVING COUNT(*) > 0 ON CONFLICT (id) DO UPDATE "
    "SET through_id = GREATEST(revocation_log_pruned.through_id, excluded.through_id)) "
    "SELECT COUNT(*) FROM deleted";
constexpr std::string_view kPruneSecurityEvents =
    "DELETE FROM security_events WHERE id IN "
    "(SELECT id FROM security_events WHERE ts < $1 ORDER BY ts LIMIT $2)";

#define MYELIN_PG_UIA_SESSION_COLUMNS                                             \
    "session_id, endpoint, user_id, flows, registration, created_ts, completed, " \
    "registration_token, finished "

constexpr std::string_view kFindUiaSession =
    "SELECT " MYELIN_PG_UIA_SESSION_COLUMNS "FROM uia_sessions WHERE session_id = $1";
constexpr std::string_view kCountLiveUiaSessions =
    "SELECT COUNT(*) FROM uia_sessions WHERE created_ts >= $1 AND NOT finished";
constexpr std::string_view kInsertUiaSession =
    "INSERT INTO uia_sessions (" MYELIN_PG_UIA_SESSION_COLUMNS
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (session_id) DO NOTHING";
// The compare-and-swap of a session's stages: one statement, decided by the row lock (and,
// under SERIALIZABLE, a lost race becomes a retried job).
constexpr std::string_view kUpdateUiaSessionStages =
    "UPDATE uia_sessions SET completed = $3, registration_token = COALESCE($4, "
    "registration_token) WHERE session_id = $1 AND completed = $2 AND NOT finished "
    "AND created_ts >= $5";
// Using a session up: of concurrent callers on any connection, only one matches.
constexpr std::string_view kFinishUiaSession =
    "UPDATE uia_sessions SET finished = TRUE WHERE session_id = $1 AND NOT finished "
    "AND created_ts >= $2 RETURNING " MYELIN_PG_UIA_SESSION_COLUMNS;
// Takes the oldest rows through the created_ts index (migration 5): bounded by `limit`.
constexpr std::string_view kPruneUiaSessions =
    "DELETE FROM uia_sessions WHERE session_id IN (SELECT session_id FROM uia_sessions "
    "WHERE created_ts < $1 ORDER BY created_ts LIMIT $2) RETURNING finished, registration_token";

#undef MYELIN_PG_UIA_SESSION_COLUMNS
#undef MYELIN_PG_SESSION_COLUMNS
#undef MYELIN_PG_JOINED_SESSION_COLUMNS

// ---- Helpers ------------------------------------------------------------------------------

Params& add_optional_bytes(Params& params, const std::vector<std::uint8_t>& bytes) {
    return bytes.empty() ? params.add_null() : params.add_bytes(bytes);
}

}  // namespace

// ---- Queries ------------------------------------------------------------------------------

template <typename Base>
Result<std::optional<UserRecord>> PgQueries<Base>::find_user(std::string_view user_id) {
    return first_row<UserRecord>(conn_.query(kFindUser, Params{}.add_text(user_id)),
                                 [](const Row& r) { return rows::read_user(r); });
}

template <typename Base>
Result<std::optional<DeviceRecord>> PgQueries<Base>::find_device(std::string_view user_id,
                                                                 std::string_view device_id) {
    return first_row<DeviceRecord>(
        conn_.query(kFindDevice, Params{}.add_text(user_id).add_text(device_id)),
        [](const Row& r) { return rows::read_device(r); });
}

template <typename Base>
Result<std::vector<DeviceRecord>> PgQueries<Base>::list_devices(std::string_view user_id) {
    return all_rows<DeviceRecord>(conn_.query(kListDevices, Params{}.add_text(user_id)),
                                  [](const Row& r) { return rows::read_device(r); });
}

template <typename Base>
Result<std::optional<SessionRecord>> PgQueries<Base>::find_session(std::int64_t session_id) {
    return first_row<SessionRecord>(conn_.query(kFindSession, Params{}.add_int(session_id)),
                                    [](const Row& r) { return rows::read_session(r, 0); });
}

template <typename Base>
Result<std::vector<SessionRecord>> PgQueries<Base>::live_sessions(
    std::string_view user_id, std::optional<std::string_view> device_id) {
    Params params;
    params.add_text(user_id);
    if (device_id) params.add_text(*device_id);
    return all_rows<SessionRecord>(
        conn_.query(device_id ? kLiveSessionsOfDevice : kLiveSessionsOfUser, params),
        [](const Row& r) { return rows::read_session(r, 0); });
}

template <typename Base>
Result<std::optional<AccessTokenLookup>> PgQueries<Base>::find_access_token(const TokenHash& hash) {
    return first_row<AccessTokenLookup>(conn_.query(kFindAccessToken, Params{}.add_bytes(hash)),
                                        [](const Row& r) { return rows::read_access_token(r); });
}

template <typename Base>
Result<std::optional<RefreshTokenLookup>> PgQueries<Base>::find_refresh_token(
    const TokenHash& hash) {
    return first_row<RefreshTokenLookup>(conn_.query(kFindRefreshToken, Params{}.add_bytes(hash)),
                                         [](const Row& r) { return rows::read_refresh_token(r); });
}

template <typename Base>
Result<void> PgQueries<Base>::for_each_live_access_token(
    const std::function<void(const AccessTokenLookup&)>& fn) {
    // Streamed row by row: at start-up this is every usable token of the server.
    return conn_.query_each(kLiveAccessTokens, Params{}, [&fn](const Row& r) -> Result<void> {
        auto lookup = rows::read_access_token(r);
        if (!lookup) return lookup.error();
        fn(*lookup);
        return {};
    });
}

template <typename Base>
Result<std::vector<SecurityEventRecord>> PgQueries<Base>::security_events(std::string_view user_id,
                                                                          int limit) {
    if (limit <= 0) return std::vector<SecurityEventRecord>{};  // as the SQLite backend
    return all_rows<SecurityEventRecord>(
        conn_.query(kSecurityEvents, Params{}.add_text(user_id).add_int(limit)),
        [](const Row& r) { return rows::read_security_event(r); });
}

template <typename Base>
Result<std::optional<RegistrationTokenRecord>> PgQueries<Base>::find_registration_token(
    std::string_view token) {
    return first_row<RegistrationTokenRecord>(
        conn_.query(kFindRegistrationToken, Params{}.add_text(token)),
        [](const Row& r) { return rows::read_registration_token(r); });
}

template <typename Base>
Result<std::vector<RegistrationTokenRecord>> PgQueries<Base>::list_registration_tokens() {
    return all_rows<RegistrationTokenRecord>(
        conn_.query(kListRegistrationTokens, Params{}),
        [](const Row& r) { return rows::read_registration_token(r); });
}

template <typename Base>
Result<std::vector<RevocationRecord>> PgQueries<Base>::revocations_since(std::int64_t after_id,
                                                                         int limit) {
    if (limit <= 0) return std::vector<RevocationRecord>{};  // as the SQLite backend
    return all_rows<RevocationRecord>(
        conn_.query(kRevocationsSince, Params{}.add_int(after_id).add_int(limit)),
        [](const Row& r) { return rows::read_revocation(r); });
}

template <typename Base>
Result<std::int64_t> PgQueries<Base>::latest_revocation_id() {
    auto rows = conn_.query(kLatestRevocationId, Params{});
    if (!rows) return rows.error();
    return rows->row(0).column_int(0);
}

template <typename Base>
Result<std::int64_t> PgQueries<Base>::revocation_log_pruned_through() {
    auto rows = conn_.query(kRevocationLogPrunedThrough, Params{});
    if (!rows) return rows.error();
    return rows->row(0).column_int(0);
}

template <typename Base>
Result<std::vector<SessionRecord>> PgQueries<Base>::revoked_sessions_after(
    std::int64_t after_session_id, int limit) {
    if (limit <= 0) return std::vector<SessionRecord>{};  // as the SQLite backend
    return all_rows<SessionRecord>(
        conn_.query(kRevokedSessionsAfter, Params{}.add_int(after_session_id).add_int(limit)),
        [](const Row& r) { return rows::read_session(r, 0); });
}

template <typename Base>
Result<std::optional<UiaSessionRecord>> PgQueries<Base>::find_uia_session(
    std::string_view session_id) {
    return first_row<UiaSessionRecord>(conn_.query(kFindUiaSession, Params{}.add_text(session_id)),
                                       [](const Row& r) { return rows::read_uia_session(r); });
}

template <typename Base>
Result<std::int64_t> PgQueries<Base>::count_live_uia_sessions(std::int64_t min_created_ts) {
    auto rows = conn_.query(kCountLiveUiaSessions, Params{}.add_int(min_created_ts));
    if (!rows) return rows.error();
    return rows->row(0).column_int(0);
}

template class PgQueries<ReadTxn>;
template class PgQueries<WriteTxn>;

// ---- Mutations ----------------------------------------------------------------------------

Result<bool> PgWriteTxn::insert_user(const UserRecord& user) {
    return changed_one(conn_.query(kInsertUser, Params{}
                                                    .add_text(user.user_id)
                                                    .add_text(user.password_hash)
                                                    .add_bool(user.is_guest)
                                                    .add_bool(user.is_admin)
                                                    .add_bool(user.deactivated)
                                                    .add_int(user.created_ts)));
}

Result<void> PgWriteTxn::set_password_hash(std::string_view user_id, std::string_view hash) {
    return done(conn_.query(kSetPasswordHash, Params{}.add_text(user_id).add_text(hash)));
}

Result<bool> PgWriteTxn::ensure_device(const DeviceRecord& device) {
    Params params;
    params.add_text(device.user_id).add_text(device.device_id);
    if (device.display_name) {
        params.add_text(*device.display_name);
    } else {
        params.add_null();
    }
    params.add_int(device.created_ts).add_int(device.last_seen_ts).add_text(device.last_seen_ip);
    return changed_one(conn_.query(kEnsureDevice, params));
}

Result<void> PgWriteTxn::delete_device(std::string_view user_id, std::string_view device_id) {
    return done(conn_.query(kDeleteDevice, Params{}.add_text(user_id).add_text(device_id)));
}

Result<std::int64_t> PgWriteTxn::insert_session(const SessionRecord& session) {
    auto rows = conn_.query(kInsertSession,
                            Params{}
                                .add_text(session.user_id)
                                .add_text(session.device_id)
                                .add_bool(session.refreshable)
                                .add_bool(session.is_guest)
                                .add_int(session.created_ts)
                                .add_int(session.ends_ts)
                                .add_int(session.current_generation)
                                .add_int(session.used_generation)
                                .add_int(session.revoked_ts)
                                .add_int(static_cast<std::int64_t>(session.revoked_reason)));
    if (!rows) return rows.error();
    return rows->row(0).column_int(0);
}

Result<void> PgWriteTxn::insert_access_token(const AccessTokenRecord& token) {
    return done(conn_.query(kInsertAccessToken, Params{}
                                                    .add_bytes(token.token_hash)
                                                    .add_int(token.session_id)
                                                    .add_int(token.generation)
                                                    .add_int(token.issued_ts)
                                                    .add_int(token.expires_ts)));
}

Result<void> PgWriteTxn::insert_refresh_token(const RefreshTokenRecord& token) {
    Params params;
    params.add_bytes(token.token_hash)
        .add_int(token.session_id)
        .add_int(token.generation)
        .add_int(token.issued_ts)
        .add_int(token.expires_ts);
    add_optional_bytes(params, token.sealed_successor);
    return done(conn_.query(kInsertRefreshToken, params));
}

Result<bool> PgWriteTxn::update_session_generations(std::int64_t session_id,
                                                    std::int64_t expected_current,
                                                    std::int64_t new_current,
                                                    std::int64_t new_used) {
    auto rows = conn_.query(kUpdateSessionGenerations, Params{}
                                                           .add_int(session_id)
                                                           .add_int(expected_current)
                                                           .add_int(new_current)
                                                           .add_int(new_used));
    if (!rows) return rows.error();
    return rows->affected() > 0;
}

Result<bool> PgWriteTxn::rotate_session(const SessionRotation& rotation) {
    Params params;
    params.add_int(rotation.session_id)
        .add_int(rotation.expected_current)
        .add_int(rotation.new_current)
        .add_int(rotation.new_used)
        .add_bytes(rotation.access.token_hash)
        .add_int(rotation.access.generation)
        .add_int(rotation.access.issued_ts)
        .add_int(rotation.access.expires_ts)
        .add_bytes(rotation.refresh.token_hash)
        .add_int(rotation.refresh.generation)
        .add_int(rotation.refresh.issued_ts)
        .add_int(rotation.refresh.expires_ts);
    add_optional_bytes(params, rotation.old_sealed_successor);
    params.add_bytes(rotation.old_refresh_hash);
    auto rows = conn_.query(kRotateSession, params, "a refresh-token rotation");
    if (!rows) return rows.error();
    return rows->row(0).column_int(0) > 0;
}

Result<void> PgWriteTxn::set_sealed_successor(const TokenHash& refresh_hash,
                                              const std::vector<std::uint8_t>& sealed) {
    Params params;
    params.add_bytes(refresh_hash);
    add_optional_bytes(params, sealed);
    return done(conn_.query(kSetSealedSuccessor, params));
}

Result<void> PgWriteTxn::wipe_sealed_successors(std::int64_t session_id) {
    return done(conn_.query(kWipeSealedSuccessors, Params{}.add_int(session_id)));
}

Result<void> PgWriteTxn::revoke_session(std::int64_t session_id, std::int64_t ts,
                                        RevokeReason reason) {
    // revoked_ts = 0 means "live": a zero timestamp or kNone would silently leave it live.
    if (ts <= 0 || reason == RevokeReason::kNone) {
        return errors::internal(
            fmt::format("revoke_session({}) needs a positive timestamp and a reason", session_id));
    }
    const auto code = static_cast<std::int64_t>(reason);
    auto revoked =
        conn_.query(kRevokeSession, Params{}.add_int(session_id).add_int(ts).add_int(code));
    if (!revoked) return revoked.error();
    // Logged only when this call ended a live session: a follower acts once per revocation.
    if (revoked->empty()) return {};
    return done(
        conn_.query(kAppendRevocation, Params{}.add_int(session_id).add_int(code).add_int(ts)));
}

Result<void> PgWriteTxn::delete_session_tokens(std::int64_t session_id) {
    return done(conn_.query(kDeleteSessionTokens, Params{}.add_int(session_id)));
}

Result<void> PgWriteTxn::insert_security_event(const SecurityEventRecord& event) {
    return done(conn_.query(kInsertSecurityEvent, Params{}
                                                      .add_text(event.user_id)
                                                      .add_text(event.device_id)
                                                      .add_int(event.ts)
                                                      .add_text(event.kind)
                                                      .add_text(event.detail)));
}

Result<bool> PgWriteTxn::set_user_deactivated(std::string_view user_id, bool deactivated) {
    return changed_one(
        conn_.query(kSetUserDeactivated, Params{}.add_text(user_id).add_bool(deactivated)));
}

Result<bool> PgWriteTxn::set_user_admin(std::string_view user_id, bool is_admin) {
    return changed_one(conn_.query(kSetUserAdmin, Params{}.add_text(user_id).add_bool(is_admin)));
}

Result<bool> PgWriteTxn::set_device_display_name(std::string_view user_id,
                                                 std::string_view device_id,
                                                 std::optional<std::string_view> display_name) {
    Params params;
    params.add_text(user_id).add_text(device_id);
    if (display_name) {
        params.add_text(*display_name);
    } else {
        params.add_null();
    }
    return changed_one(conn_.query(kSetDeviceDisplayName, params));
}

Result<void> PgWriteTxn::record_device_activity(std::string_view user_id,
                                                std::string_view device_id, std::int64_t ts,
                                                std::string_view ip) {
    return done(
        conn_.query(kRecordDeviceActivity,
                    Params{}.add_text(user_id).add_text(device_id).add_int(ts).add_text(ip)));
}

Result<bool> PgWriteTxn::insert_registration_token(const RegistrationTokenRecord& token) {
    Params params;
    params.add_text(token.token);
    if (token.uses_allowed) {
        params.add_int(*token.uses_allowed);
    } else {
        params.add_null();
    }
    params.add_int(token.expiry_ts).add_int(token.created_ts);
    return changed_one(conn_.query(kInsertRegistrationToken, params));
}

Result<bool> PgWriteTxn::delete_registration_token(std::string_view token) {
    return changed_one(conn_.query(kDeleteRegistrationToken, Params{}.add_text(token)));
}

Result<bool> PgWriteTxn::update_registration_token_counts(std::string_view token,
                                                          std::int64_t pending_delta,
                                                          std::int64_t completed_delta) {
    return changed_one(
        conn_.query(kUpdateRegistrationTokenCounts,
                    Params{}.add_text(token).add_int(pending_delta).add_int(completed_delta)));
}

Result<std::int64_t> PgWriteTxn::prune_revocation_log(std::int64_t before_ts, int limit) {
    if (limit <= 0) return std::int64_t{0};  // as the SQLite backend
    auto rows = conn_.query(kPruneRevocationLog, Params{}.add_int(before_ts).add_int(limit));
    if (!rows) return rows.error();
    return rows->row(0).column_int(0);
}

Result<std::int64_t> PgWriteTxn::prune_security_events(std::int64_t before_ts, int limit) {
    if (limit <= 0) return std::int64_t{0};  // as the SQLite backend
    auto rows = conn_.query(kPruneSecurityEvents, Params{}.add_int(before_ts).add_int(limit));
    if (!rows) return rows.error();
    return rows->affected();
}

Result<bool> PgWriteTxn::insert_uia_session(const UiaSessionRecord& session) {
    Params params;
    params.add_text(session.session_id)
        .add_text(session.endpoint)
        .add_text(session.user_id)
        .add_text(encode_flows(session.flows))
        .add_bool(session.registration)
        .add_int(session.created_ts)
        .add_text(encode_stages(session.completed));
    if (session.registration_token) {
        params.add_text(*session.registration_token);
    } else {
        params.add_null();
    }
    params.add_bool(session.finished);
    return changed_one(conn_.query(kInsertUiaSession, params));
}

Result<bool> PgWriteTxn::update_uia_session_stages(
    std::string_view session_id, const std::vector<std::string>& expected_completed,
    const std::vector<std::string>& completed, std::optional<std::string_view> registration_token,
    std::int64_t min_created_ts) {
    Params params;
    params.add_text(session_id)
        .add_text(encode_stages(expected_completed))
        .add_text(encode_stages(completed));
    if (registration_token) {
        params.add_text(*registration_token);
    } else {
        params.add_null();
    }
    params.add_int(min_created_ts);
    return changed_one(conn_.query(kUpdateUiaSessionStages, params));
}

Result<std::optional<UiaSessionRecord>> PgWriteTxn::finish_uia_session(
    std::string_view session_id, std::int64_t min_created_ts) {
    return first_row<UiaSessionRecord>(
        conn_.query(kFinishUiaSession, Params{}.add_text(session_id).add_int(min_created_ts)),
        [](const Row& r) { return rows::read_uia_session(r); });
}

Result<UiaPruneResult> PgWriteTxn::prune_uia_sessions(std::int64_t before_ts, int limit) {
    UiaPruneResult result;
    if (limit <= 0) return result;  // as the SQLite backend
    auto rows = conn_.query(kPruneUiaSessions, Params{}.add_int(before_ts).add_int(limit));
    if (!rows) return rows.error();
    result.deleted = rows->size();
    for (int i = 0; i < rows->size(); ++i) {
        const Row row = rows->row(i);
        if (!row.column_bool(0) && !row.column_is_null(1)) {
            result.held_tokens.push_back(row.column_text(1));
        }
    }
    return result;
}

}  // namespace myelin::storage::pg
