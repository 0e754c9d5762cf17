#include "myelin/storage/sqlite/sqlite_txn.hpp"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "myelin/storage/row_readers.hpp"

namespace myelin::storage::sqlite {

namespace {

// ---- SQL ----------------------------------------------------------------------------------
// Column lists are spelled out in every statement so that the row readers below can rely on
// their positions.

constexpr std::string_view kFindUser =
    "SELECT user_id, password_hash, is_guest, is_admin, deactivated, created_ts "
    "FROM users WHERE user_id = ?1";
constexpr std::string_view kInsertUser =
    "INSERT INTO users (user_id, password_hash, is_guest, is_admin, deactivated, created_ts) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id) DO NOTHING";
constexpr std::string_view kSetPasswordHash =
    "UPDATE users SET password_hash = ?2 WHERE user_id = ?1";

constexpr std::string_view kFindDevice =
    "SELECT user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip "
    "FROM devices WHERE user_id = ?1 AND device_id = ?2";
constexpr std::string_view kListDevices =
    "SELECT user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip "
    "FROM devices WHERE user_id = ?1 ORDER BY device_id";
constexpr std::string_view kEnsureDevice =
    "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, "
    "last_seen_ip) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id, device_id) DO NOTHING";
constexpr std::string_view kDeleteDevice =
    "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2";

constexpr std::string_view kFindSession =
    "SELECT session_id, user_id, device_id, refreshable, is_guest, created_ts, ends_ts, "
    "current_generation, used_generation, revoked_ts, revoked_reason "
    "FROM sessions WHERE session_id = ?1";
constexpr std::string_view kLiveSessionsOfUser =
    "SELECT session_id, user_id, device_id, refreshable, is_guest, created_ts, ends_ts, "
    "current_generation, used_generation, revoked_ts, revoked_reason "
    "FROM sessions WHERE user_id = ?1 AND revoked_ts = 0 ORDER BY session_id";
constexpr std::string_view kLiveSessionsOfDevice =
    "SELECT session_id, user_id, device_id, refreshable, is_guest, created_ts, ends_ts, "
    "current_generation, used_generation, revoked_ts, revoked_reason "
    "FROM sessions WHERE user_id = ?1 AND device_id = ?2 AND revoked_ts = 0 "
    "ORDER BY session_id";
constexpr std::string_view kInsertSession =
    "INSERT INTO sessions (user_id, device_id, refreshable, is_guest, created_ts, ends_ts, "
    "current_generation, used_generation, revoked_ts, revoked_reason) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
constexpr std::string_view kUpdateSessionGenerations =
    "UPDATE sessions SET current_generation = ?3, used_generation = ?4 "
    "WHERE session_id = ?1 AND current_generation = ?2 AND revoked_ts = 0";
constexpr std::string_view kRevokeSession =
    "UPDATE sessions SET revoked_ts = ?2, revoked_reason = ?3 "
    "WHERE session_id = ?1 AND revoked_ts = 0";

constexpr std::string_view kFindAccessToken =
    "SELECT t.token_hash, t.session_id, t.generation, t.issued_ts, t.expires_ts, "
    "s.session_id, s.user_id, s.device_id, s.refreshable, s.is_guest, s.created_ts, s.ends_ts, "
    "s.current_generation, s.used_generation, s.revoked_ts, s.revoked_reason "
    "FROM access_tokens AS t JOIN sessions AS s ON s.session_id = t.session_id "
    "WHERE t.token_hash = ?1";
// In no particular order (the cache does not need one): the token table is read in its own
// key order, each session found by rowid. An ORDER BY t.session_id made SQLite walk
// access_tokens_by_session, look every token row up by its random hash and sort in a temp
// B-tree (the query alone 2.4x slower at 1,000,000 sessions; the whole warm-up, which is
// mostly the cache's inserts, ~10 % slower: bench/README.md, "scale").
constexpr std::string_view kLiveAccessTokens =
    "SELECT t.token_hash, t.session_id, t.generation, t.issued_ts, t.expires_ts, "
    "s.session_id, s.user_id, s.device_id, s.refreshable, s.is_guest, s.created_ts, s.ends_ts, "
    "s.current_generation, s.used_generation, s.revoked_ts, s.revoked_reason "
    "FROM access_tokens AS t JOIN sessions AS s ON s.session_id = t.session_id "
    "WHERE s.revoked_ts = 0 AND t.generation >= s.used_generation";
constexpr std::string_view kInsertAccessToken =
    "INSERT INTO access_tokens (token_hash, session_id, generation, issued_ts, expires_ts) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr std::string_view kDeleteAccessTokensOfSession =
    "DELETE FROM access_tokens WHERE session_id = ?1";

constexpr std::string_view kFindRefreshToken =
    "SELECT t.token_hash, t.session_id, t.generation, t.issued_ts, t.expires_ts, "
    "t.sealed_successor, "
    "s.session_id, s.user_id, s.device_id, s.refreshable, s.is_guest, s.created_ts, s.ends_ts, "
    "s.current_generation, s.used_generation, s.revoked_ts, s.revoked_reason "
    "FROM refresh_tokens AS t JOIN sessions AS s ON s.session_id = t.session_id "
    "WHERE t.token_hash = ?1";
constexpr std::string_view kInsertRefreshToken =
    "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_ts, expires_ts, "
    "sealed_successor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr std::string_view kSetSealedSuccessor =
    "UPDATE refresh_tokens SET sealed_successor = ?2 WHERE token_hash = ?1";
// The rotated-out token's seal: only on a token of the rotated session.
constexpr std::string_view kSealRotatedOut =
    "UPDATE refresh_tokens SET sealed_successor = ?3 WHERE token_hash = ?1 AND session_id = ?2";
constexpr std::string_view kWipeSealedSuccessors =
    "UPDATE refresh_tokens INDEXED BY refresh_tokens_sealed_by_session "
    "SET sealed_successor = NULL WHERE session_id = ?1 AND sealed_successor IS NOT NULL";
constexpr std::string_view kDeleteRefreshTokensOfSession =
    "DELETE FROM refresh_tokens WHERE session_id = ?1";

constexpr std::string_view kSecurityEvents =
    "SELECT id, user_id, device_id, ts, kind, detail FROM security_events "
    "WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2";
constexpr std::string_view kInsertSecurityEvent =
    "INSERT INTO security_events (user_id, device_id, ts, kind, detail) "
    "VALUES (?1, ?2, ?3, ?4, ?5)";

constexpr std::string_view kSetUserDeactivated =
    "UPDATE users SET deactivated = ?2 WHERE user_id = ?1";
constexpr std::string_view kSetUserAdmin = "UPDATE users SET is_admin = ?2 WHERE user_id = ?1";
constexpr std::string_view kSetDeviceDisplayName =
    "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2";
constexpr std::string_view kRecordDeviceActivity =
    "UPDATE devices SET last_seen_ts = ?3, last_seen_ip = ?4 "
    "WHERE user_id = ?1 AND device_id = ?2 AND last_seen_ts < ?3";

constexpr std::string_view kFindRegistrationToken =
    "SELECT token, uses_allowed, pending, completed, expiry_ts, created_ts "
    "FROM registration_tokens WHERE token = ?1";
constexpr std::string_view kListRegistrationTokens =
    "SELECT token, uses_allowed, pending, completed, expiry_ts, created_ts "
    "FROM registration_tokens ORDER BY token";
constexpr std::string_view kInsertRegistrationToken =
    "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_ts, "
    "created_ts) VALUES (?1, ?2, 0, 0, ?3, ?4) ON CONFLICT (token) DO NOTHING";
constexpr std::string_view kDeleteRegistrationToken =
    "DELETE FROM registration_tokens WHERE token = ?1";
constexpr std::string_view kUpdateRegistrationTokenCounts =
    "UPDATE registration_tokens SET pending = MAX(0, pending + ?2), "
    "completed = MAX(0, completed + ?3) WHERE token = ?1";

constexpr std::string_view kAppendRevocation =
    "INSERT INTO revocation_log (session_id, reason, ts) VALUES (?1, ?2, ?3)";
// LEFT JOIN: sessions are never deleted today, but should that change, a follower must still see
// every entry (with empty user and device) rather than silently skip one.
constexpr std::string_view kRevocationsSince =
    "SELECT r.id, r.session_id, COALESCE(s.user_id, ''), COALESCE(s.device_id, ''), r.reason, "
    "r.ts FROM revocation_log AS r LEFT JOIN sessions AS s ON s.session_id = r.session_id "
    "WHERE r.id > ?1 ORDER BY r.id LIMIT ?2";
// Pruned entries count too: a follower primed on an emptied log must not look as if it had
// missed them.
constexpr std::string_view kLatestRevocationId =
    "SELECT MAX(COALESCE((SELECT MAX(id) FROM revocation_log), 0), "
    "COALESCE((SELECT through_id FROM revocation_log_pruned WHERE id = 1), 0))";
constexpr std::string_view kRevocationLogPrunedThrough =
    "SELECT COALESCE((SELECT through_id FROM revocation_log_pruned WHERE id = 1), 0)";
constexpr std::string_view kRevokedSessionsAfter =
    "SELECT session_id, user_id, device_id, refreshable, is_guest, created_ts, ends_ts, "
    "current_generation, used_generation, revoked_ts, revoked_reason "
    "FROM sessions WHERE session_id > ?1 AND revoked_ts <> 0 ORDER BY session_id LIMIT ?2";
// Both prunes walk the ts index from its oldest end: the work is bounded by `limit`, not by the
// table's size (migration 4).
constexpr std::string_view kPruneRevocationLog =
    "DELETE FROM revocation_log WHERE id IN "
    "(SELECT id FROM revocation_log WHERE ts < ?1 ORDER BY ts LIMIT ?2) RETURNING id";
constexpr std::string_view kRecordRevocationLogPruned =
    "INSERT INTO revocation_log_pruned (id, through_id) VALUES (1, ?1) "
    "ON CONFLICT (id) DO UPDATE SET through_id = MAX(through_id, excluded.through_id)";
constexpr std::string_view kPruneSecurityEvents =
    "DELETE FROM security_events WHERE id IN "
    "(SELECT id FROM security_events WHERE ts < ?1 ORDER BY ts LIMIT ?2)";

constexpr std::string_view kFindUiaSession =
    "SELECT session_id, endpoint, user_id, flows, registration, created_ts, completed, "
    "registration_token, finished FROM uia_sessions WHERE session_id = ?1";
constexpr std::string_view kCountLiveUiaSessions =
    "SELECT COUNT(*) FROM uia_sessions WHERE created_ts >= ?1 AND finished = 0";
constexpr std::string_view kInsertUiaSession =
    "INSERT INTO uia_sessions (session_id, endpoint, user_id, flows, registration, created_ts, "
    "completed, registration_token, finished) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
    "ON CONFLICT (session_id) DO NOTHING";
constexpr std::string_view kUpdateUiaSessionStages =
    "UPDATE uia_sessions SET completed = ?3, registration_token = COALESCE(?4, "
    "registration_token) WHERE session_id = ?1 AND completed = ?2 AND finished = 0 "
    "AND created_ts >= ?5";
constexpr std::string_view kFinishUiaSession =
    "UPDATE uia_sessions SET finished = 1 WHERE session_id = ?1 AND finished = 0 "
    "AND created_ts >= ?2 RETURNING session_id, endpoint, user_id, flows, registration, "
    "created_ts, completed, registration_token, finished";
// Walks the created_ts index from its oldest end: bounded by `limit` (migration 5).
constexpr std::string_view kPruneUiaSessions =
    "DELETE FROM uia_sessions WHERE session_id IN (SELECT session_id FROM uia_sessions "
    "WHERE created_ts < ?1 ORDER BY created_ts LIMIT ?2) RETURNING finished, registration_token";

// ---- Row readers --------------------------------------------------------------------------

using rows::read_access_token;
using rows::read_device;
using rows::read_registration_token;
using rows::read_session;
using rows::read_user;

// The integer in the first column of a statement's first row, or 0 when it yields none.
Result<std::int64_t> single_int(Statement& s) {
    auto row = s.step();
    if (!row) return row.error();
    if (!*row) return std::int64_t{0};
    return s.column_int(0);
}

// Every row of a statement selecting the session columns of kFindSession.
Result<std::vector<SessionRecord>> all_sessions(Statement& s) {
    std::vector<SessionRecord> sessions;
    for (;;) {
        auto row = s.step();
        if (!row) return row.error();
        if (!*row) return sessions;
        sessions.push_back(read_session(s, 0));
    }
}

// Runs a statement that yields at most one row and reads it with `read_row`.
template <typename T, typename ReadRow>
Result<std::optional<T>> one_row(Statement& s, ReadRow read_row) {
    auto row = s.step();
    if (!row) return row.error();
    if (!*row) return std::optional<T>();
    Result<T> value = read_row(s);
    if (!value) return value.error();
    return std::optional<T>(std::move(*value));
}

void bind_session(Statement& s, const SessionRecord& session) {
    s.bind_text(1, session.user_id);
    s.bind_text(2, session.device_id);
    s.bind_int(3, session.refreshable ? 1 : 0);
    s.bind_int(4, session.is_guest ? 1 : 0);
    s.bind_int(5, session.created_ts);
    s.bind_int(6, session.ends_ts);
    s.bind_int(7, session.current_generation);
    s.bind_int(8, session.used_generation);
    s.bind_int(9, session.revoked_ts);
    s.bind_int(10, static_cast<std::int64_t>(session.revoked_reason));
}

}  // namespace

// ---- Queries ------------------------------------------------------------------------------

template <typename Base>
Result<std::optional<UserRecord>> SqliteQueries<Base>::find_user(std::string_view user_id) {
    auto stmt = conn_.prepare(kFindUser);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    return one_row<UserRecord>(
        **stmt, [](const Statement& s) -> Result<UserRecord> { return read_user(s); });
}

template <typename Base>
Result<std::optional<DeviceRecord>> SqliteQueries<Base>::find_device(std::string_view user_id,
                                                                     std::string_view device_id) {
    auto stmt = conn_.prepare(kFindDevice);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    return one_row<DeviceRecord>(
        **stmt, [](const Statement& s) -> Result<DeviceRecord> { return read_device(s); });
}

template <typename Base>
Result<std::vector<DeviceRecord>> SqliteQueries<Base>::list_devices(std::string_view user_id) {
    auto stmt = conn_.prepare(kListDevices);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    std::vector<DeviceRecord> devices;
    for (;;) {
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return devices;
        devices.push_back(read_device(**stmt));
    }
}

template <typename Base>
Result<std::optional<SessionRecord>> SqliteQueries<Base>::find_session(std::int64_t session_id) {
    auto stmt = conn_.prepare(kFindSession);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, session_id);
    return one_row<SessionRecord>(
        **stmt, [](const Statement& s) -> Result<SessionRecord> { return read_session(s, 0); });
}

template <typename Base>
Result<std::vector<SessionRecord>> SqliteQueries<Base>::live_sessions(
    std::string_view user_id, std::optional<std::string_view> device_id) {
    auto stmt = conn_.prepare(device_id ? kLiveSessionsOfDevice : kLiveSessionsOfUser);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    if (device_id) (*stmt)->bind_text(2, *device_id);
    return all_sessions(**stmt);
}

template <typename Base>
Result<std::optional<AccessTokenLookup>> SqliteQueries<Base>::find_access_token(
    const TokenHash& hash) {
    auto stmt = conn_.prepare(kFindAccessToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_blob(1, hash);
    return one_row<AccessTokenLookup>(**stmt, read_access_token<Statement>);
}

template <typename Base>
Result<std::optional<RefreshTokenLookup>> SqliteQueries<Base>::find_refresh_token(
    const TokenHash& hash) {
    auto stmt = conn_.prepare(kFindRefreshToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_blob(1, hash);
    return one_row<RefreshTokenLookup>(
        **stmt, [](const Statement& s) { return rows::read_refresh_token(s); });
}

template <typename Base>
Result<void> SqliteQueries<Base>::for_each_live_access_token(
    const std::function<void(const AccessTokenLookup&)>& fn) {
    auto stmt = conn_.prepare(kLiveAccessTokens);
    if (!stmt) return stmt.error();
    for (;;) {
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return {};
        auto lookup = read_access_token(**stmt);
        if (!lookup) return lookup.error();
        fn(*lookup);
    }
}

template <typename Base>
Result<std::vector<SecurityEventRecord>> SqliteQueries<Base>::security_events(
    std::string_view user_id, int limit) {
    std::vector<SecurityEventRecord> events;
    if (limit <= 0) return events;  // SQLite reads a negative LIMIT as "no limit"
    auto stmt = conn_.prepare(kSecurityEvents);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_int(2, limit);
    for (;;) {
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return events;
        events.push_back(rows::read_security_event(**stmt));
    }
}

template <typename Base>
Result<std::optional<RegistrationTokenRecord>> SqliteQueries<Base>::find_registration_token(
    std::string_view token) {
    auto stmt = conn_.prepare(kFindRegistrationToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, token);
    return one_row<RegistrationTokenRecord>(
        **stmt, [](const Statement& s) -> Result<RegistrationTokenRecord> {
            return read_registration_token(s);
        });
}

template <typename Base>
Result<std::vector<RegistrationTokenRecord>> SqliteQueries<Base>::list_registration_tokens() {
    auto stmt = conn_.prepare(kListRegistrationTokens);
    if (!stmt) return stmt.error();
    std::vector<RegistrationTokenRecord> tokens;
    for (;;) {
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return tokens;
        tokens.push_back(read_registration_token(**stmt));
    }
}

template <typename Base>
Result<std::vector<RevocationRecord>> SqliteQueries<Base>::revocations_since(std::int64_t after_id,
                                                                             int limit) {
    std::vector<RevocationRecord> revocations;
    if (limit <= 0) return revocations;  // SQLite reads a negative LIMIT as "no limit"
    auto stmt = conn_.prepare(kRevocationsSince);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, after_id);
    (*stmt)->bind_int(2, limit);
    for (;;) {
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return revocations;
        revocations.push_back(rows::read_revocation(**stmt));
    }
}

template <typename Base>
Result<std::int64_t> SqliteQueries<Base>::latest_revocation_id() {
    auto stmt = conn_.prepare(kLatestRevocationId);
    if (!stmt) return stmt.error();
    return single_int(**stmt);
}

template <typename Base>
Result<std::int64_t> SqliteQueries<Base>::revocation_log_pruned_through() {
    auto stmt = conn_.prepare(kRevocationLogPrunedThrough);
    if (!stmt) return stmt.error();
    return single_int(**stmt);
}

template <typename Base>
Result<std::vector<SessionRecord>> SqliteQueries<Base>::revoked_sessions_after(
    std::int64_t after_session_id, int limit) {
    if (limit <= 0)
        return std::vector<SessionRecord>();  // SQLite reads a negative LIMIT as "no limit"
    auto stmt = conn_.prepare(kRevokedSessionsAfter);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, after_session_id);
    (*stmt)->bind_int(2, limit);
    return all_sessions(**stmt);
}

template <typename Base>
Result<std::optional<UiaSessionRecord>> SqliteQueries<Base>::find_uia_session(
    std::string_view session_id) {
    auto stmt = conn_.prepare(kFindUiaSession);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, session_id);
    return one_row<UiaSessionRecord>(**stmt, rows::read_uia_session<Statement>);
}

template <typename Base>
Result<std::int64_t> SqliteQueries<Base>::count_live_uia_sessions(std::int64_t min_created_ts) {
    auto stmt = conn_.prepare(kCountLiveUiaSessions);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, min_created_ts);
    return single_int(**stmt);
}

template class SqliteQueries<ReadTxn>;
template class SqliteQueries<WriteTxn>;

// ---- Mutations ----------------------------------------------------------------------------

Result<bool> SqliteWriteTxn::insert_user(const UserRecord& user) {
    auto stmt = conn_.prepare(kInsertUser);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user.user_id);
    (*stmt)->bind_text(2, user.password_hash);
    (*stmt)->bind_int(3, user.is_guest ? 1 : 0);
    (*stmt)->bind_int(4, user.is_admin ? 1 : 0);
    (*stmt)->bind_int(5, user.deactivated ? 1 : 0);
    (*stmt)->bind_int(6, user.created_ts);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<void> SqliteWriteTxn::set_password_hash(std::string_view user_id, std::string_view hash) {
    auto stmt = conn_.prepare(kSetPasswordHash);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, hash);
    return (*stmt)->run();
}

Result<bool> SqliteWriteTxn::ensure_device(const DeviceRecord& device) {
    auto stmt = conn_.prepare(kEnsureDevice);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, device.user_id);
    (*stmt)->bind_text(2, device.device_id);
    if (device.display_name) {
        (*stmt)->bind_text(3, *device.display_name);
    } else {
        (*stmt)->bind_null(3);
    }
    (*stmt)->bind_int(4, device.created_ts);
    (*stmt)->bind_int(5, device.last_seen_ts);
    (*stmt)->bind_text(6, device.last_seen_ip);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<void> SqliteWriteTxn::delete_device(std::string_view user_id, std::string_view device_id) {
    auto stmt = conn_.prepare(kDeleteDevice);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    return (*stmt)->run();
}

Result<std::int64_t> SqliteWriteTxn::insert_session(const SessionRecord& session) {
    auto stmt = conn_.prepare(kInsertSession);
    if (!stmt) return stmt.error();
    bind_session(**stmt, session);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.last_insert_rowid();
}

Result<void> SqliteWriteTxn::insert_access_token(const AccessTokenRecord& token) {
    auto stmt = conn_.prepare(kInsertAccessToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_blob(1, token.token_hash);
    (*stmt)->bind_int(2, token.session_id);
    (*stmt)->bind_int(3, token.generation);
    (*stmt)->bind_int(4, token.issued_ts);
    (*stmt)->bind_int(5, token.expires_ts);
    return (*stmt)->run();
}

Result<void> SqliteWriteTxn::insert_refresh_token(const RefreshTokenRecord& token) {
    auto stmt = conn_.prepare(kInsertRefreshToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_blob(1, token.token_hash);
    (*stmt)->bind_int(2, token.session_id);
    (*stmt)->bind_int(3, token.generation);
    (*stmt)->bind_int(4, token.issued_ts);
    (*stmt)->bind_int(5, token.expires_ts);
    if (token.sealed_successor.empty()) {
        (*stmt)->bind_null(6);
    } else {
        (*stmt)->bind_blob(6, token.sealed_successor);
    }
    return (*stmt)->run();
}

Result<bool> SqliteWriteTxn::update_session_generations(std::int64_t session_id,
                                                        std::int64_t expected_current,
                                                        std::int64_t new_current,
                                                        std::int64_t new_used) {
    auto stmt = conn_.prepare(kUpdateSessionGenerations);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, session_id);
    (*stmt)->bind_int(2, expected_current);
    (*stmt)->bind_int(3, new_current);
    (*stmt)->bind_int(4, new_used);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() > 0;
}

Result<bool> SqliteWriteTxn::rotate_session(const SessionRotation& rotation) {
    auto cas = update_session_generations(rotation.session_id, rotation.expected_current,
                                          rotation.new_current, rotation.new_used);
    if (!cas || !*cas) return cas;
    AccessTokenRecord access = rotation.access;
    access.session_id = rotation.session_id;
    if (auto r = insert_access_token(access); !r) return r.error();
    RefreshTokenRecord refresh = rotation.refresh;
    refresh.session_id = rotation.session_id;
    refresh.sealed_successor.clear();
    if (auto r = insert_refresh_token(refresh); !r) return r.error();
    if (auto r = wipe_sealed_successors(rotation.session_id); !r) return r.error();
    if (!rotation.old_sealed_successor.empty()) {
        auto stmt = conn_.prepare(kSealRotatedOut);
        if (!stmt) return stmt.error();
        (*stmt)->bind_blob(1, rotation.old_refresh_hash);
        (*stmt)->bind_int(2, rotation.session_id);
        (*stmt)->bind_blob(3, rotation.old_sealed_successor);
        if (auto r = (*stmt)->run(); !r) return r.error();
    }
    return true;
}

Result<void> SqliteWriteTxn::set_sealed_successor(const TokenHash& refresh_hash,
                                                  const std::vector<std::uint8_t>& sealed) {
    auto stmt = conn_.prepare(kSetSealedSuccessor);
    if (!stmt) return stmt.error();
    (*stmt)->bind_blob(1, refresh_hash);
    if (sealed.empty()) {
        (*stmt)->bind_null(2);
    } else {
        (*stmt)->bind_blob(2, sealed);
    }
    return (*stmt)->run();
}

Result<void> SqliteWriteTxn::wipe_sealed_successors(std::int64_t session_id) {
    auto stmt = conn_.prepare(kWipeSealedSuccessors);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, session_id);
    return (*stmt)->run();
}

Result<void> SqliteWriteTxn::revoke_session(std::int64_t session_id, std::int64_t ts,
                                            RevokeReason reason) {
    // revoked_ts = 0 means "live": a zero timestamp or kNone would silently leave it live.
    if (ts <= 0 || reason == RevokeReason::kNone) {
        return errors::internal(
            fmt::format("revoke_session({}) needs a positive timestamp and a reason", session_id));
    }
    {
        auto stmt = conn_.prepare(kRevokeSession);
        if (!stmt) return stmt.error();
        (*stmt)->bind_int(1, session_id);
        (*stmt)->bind_int(2, ts);
        (*stmt)->bind_int(3, static_cast<std::int64_t>(reason));
        if (auto done = (*stmt)->run(); !done) return done.error();
    }
    // Logged only when this call ended a live session: a follower acts once per revocation.
    if (conn_.changes() == 1) {
        auto stmt = conn_.prepare(kAppendRevocation);
        if (!stmt) return stmt.error();
        (*stmt)->bind_int(1, session_id);
        (*stmt)->bind_int(2, static_cast<std::int64_t>(reason));
        (*stmt)->bind_int(3, ts);
        if (auto done = (*stmt)->run(); !done) return done.error();
    }
    return wipe_sealed_successors(session_id);
}

Result<void> SqliteWriteTxn::delete_session_tokens(std::int64_t session_id) {
    for (std::string_view sql : {kDeleteAccessTokensOfSession, kDeleteRefreshTokensOfSession}) {
        auto stmt = conn_.prepare(sql);
        if (!stmt) return stmt.error();
        (*stmt)->bind_int(1, session_id);
        if (auto done = (*stmt)->run(); !done) return done.error();
    }
    return {};
}

Result<void> SqliteWriteTxn::insert_security_event(const SecurityEventRecord& event) {
    auto stmt = conn_.prepare(kInsertSecurityEvent);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, event.user_id);
    (*stmt)->bind_text(2, event.device_id);
    (*stmt)->bind_int(3, event.ts);
    (*stmt)->bind_text(4, event.kind);
    (*stmt)->bind_text(5, event.detail);
    return (*stmt)->run();
}

Result<bool> SqliteWriteTxn::set_user_deactivated(std::string_view user_id, bool deactivated) {
    auto stmt = conn_.prepare(kSetUserDeactivated);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_int(2, deactivated ? 1 : 0);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<bool> SqliteWriteTxn::set_user_admin(std::string_view user_id, bool is_admin) {
    auto stmt = conn_.prepare(kSetUserAdmin);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_int(2, is_admin ? 1 : 0);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<bool> SqliteWriteTxn::set_device_display_name(std::string_view user_id,
                                                     std::string_view device_id,
                                                     std::optional<std::string_view> display_name) {
    auto stmt = conn_.prepare(kSetDeviceDisplayName);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    if (display_name) {
        (*stmt)->bind_text(3, *display_name);
    } else {
        (*stmt)->bind_null(3);
    }
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<void> SqliteWriteTxn::record_device_activity(std::string_view user_id,
                                                    std::string_view device_id, std::int64_t ts,
                                                    std::string_view ip) {
    auto stmt = conn_.prepare(kRecordDeviceActivity);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    (*stmt)->bind_int(3, ts);
    (*stmt)->bind_text(4, ip);
    return (*stmt)->run();
}

Result<bool> SqliteWriteTxn::insert_registration_token(const RegistrationTokenRecord& token) {
    auto stmt = conn_.prepare(kInsertRegistrationToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, token.token);
    if (token.uses_allowed) {
        (*stmt)->bind_int(2, *token.uses_allowed);
    } else {
        (*stmt)->bind_null(2);
    }
    (*stmt)->bind_int(3, token.expiry_ts);
    (*stmt)->bind_int(4, token.created_ts);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<bool> SqliteWriteTxn::delete_registration_token(std::string_view token) {
    auto stmt = conn_.prepare(kDeleteRegistrationToken);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, token);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<bool> SqliteWriteTxn::update_registration_token_counts(std::string_view token,
                                                              std::int64_t pending_delta,
                                                              std::int64_t completed_delta) {
    auto stmt = conn_.prepare(kUpdateRegistrationTokenCounts);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, token);
    (*stmt)->bind_int(2, pending_delta);
    (*stmt)->bind_int(3, completed_delta);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<std::int64_t> SqliteWriteTxn::prune_revocation_log(std::int64_t before_ts, int limit) {
    if (limit <= 0) return std::int64_t{0};  // SQLite reads a negative LIMIT as "no limit"
    std::int64_t deleted = 0;
    std::int64_t highest = 0;
    {
        auto stmt = conn_.prepare(kPruneRevocationLog);
        if (!stmt) return stmt.error();
        (*stmt)->bind_int(1, before_ts);
        (*stmt)->bind_int(2, limit);
        for (;;) {
            auto row = (*stmt)->step();
            if (!row) return row.error();
            if (!*row) break;
            ++deleted;
            highest = std::max(highest, (*stmt)->column_int(0));
        }
    }
    if (deleted == 0) return deleted;
    // In the same transaction as the delete: no follower can see the gap without the mark.
    auto stmt = conn_.prepare(kRecordRevocationLogPruned);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, highest);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return deleted;
}

Result<std::int64_t> SqliteWriteTxn::prune_security_events(std::int64_t before_ts, int limit) {
    if (limit <= 0) return std::int64_t{0};  // SQLite reads a negative LIMIT as "no limit"
    auto stmt = conn_.prepare(kPruneSecurityEvents);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, before_ts);
    (*stmt)->bind_int(2, limit);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes();
}

Result<bool> SqliteWriteTxn::insert_uia_session(const UiaSessionRecord& session) {
    auto stmt = conn_.prepare(kInsertUiaSession);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, session.session_id);
    (*stmt)->bind_text(2, session.endpoint);
    (*stmt)->bind_text(3, session.user_id);
    (*stmt)->bind_text(4, encode_flows(session.flows));
    (*stmt)->bind_int(5, session.registration ? 1 : 0);
    (*stmt)->bind_int(6, session.created_ts);
    (*stmt)->bind_text(7, encode_stages(session.completed));
    if (session.registration_token) {
        (*stmt)->bind_text(8, *session.registration_token);
    } else {
        (*stmt)->bind_null(8);
    }
    (*stmt)->bind_int(9, session.finished ? 1 : 0);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<bool> SqliteWriteTxn::update_uia_session_stages(
    std::string_view session_id, const std::vector<std::string>& expected_completed,
    const std::vector<std::string>& completed, std::optional<std::string_view> registration_token,
    std::int64_t min_created_ts) {
    auto stmt = conn_.prepare(kUpdateUiaSessionStages);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, session_id);
    (*stmt)->bind_text(2, encode_stages(expected_completed));
    (*stmt)->bind_text(3, encode_stages(completed));
    if (registration_token) {
        (*stmt)->bind_text(4, *registration_token);
    } else {
        (*stmt)->bind_null(4);
    }
    (*stmt)->bind_int(5, min_created_ts);
    if (auto done = (*stmt)->run(); !done) return done.error();
    return conn_.changes() == 1;
}

Result<std::optional<UiaSessionRecord>> SqliteWriteTxn::finish_uia_session(
    std::string_view session_id, std::int64_t min_created_ts) {
    auto stmt = conn_.prepare(kFinishUiaSession);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, session_id);
    (*stmt)->bind_int(2, min_created_ts);
    auto finished = one_row<UiaSessionRecord>(**stmt, rows::read_uia_session<Statement>);
    if (!finished) return finished.error();
    // RETURNING yields its row before the statement has run to completion: finish it.
    if (auto rest = (*stmt)->step(); !rest) return rest.error();
    return finished;
}

Result<UiaPruneResult> SqliteWriteTxn::prune_uia_sessions(std::int64_t before_ts, int limit) {
    UiaPruneResult result;
    if (limit <= 0) return result;  // SQLite reads a negative LIMIT as "no limit"
    auto stmt = conn_.prepare(kPruneUiaSessions);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, before_ts);
    (*stmt)->bind_int(2, limit);
    for (;;) {
        auto row = (*stmt)->step();
        if (!row) return row.error();
        if (!*row) return result;
        ++result.deleted;
        if (!(*stmt)->column_bool(0) && !(*stmt)->column_is_null(1)) {
            result.held_tokens.push_back((*stmt)->column_text(1));
        }
    }
}

}  // namespace myelin::storage::sqlite
