#include "myelin/storage/sqlite/migrations.hpp"

#include <array>

#include <fmt/format.h>

#include "myelin/core/log.hpp"

namespace myelin::storage::sqlite {

namespace {

// Tables are STRICT so that a column holds only what its type says. A migration, once released,
// is never edited: changes go into a new, higher-numbered entry.
constexpr std::array kMigrations{
    Migration{1, "accounts, devices, sessions and tokens", R"sql(
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL DEFAULT '',
    is_guest      INTEGER NOT NULL DEFAULT 0,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    created_ts    INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT NULL,
    created_ts   INTEGER NOT NULL,
    last_seen_ts INTEGER NOT NULL DEFAULT 0,
    last_seen_ip TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID, STRICT;

CREATE TABLE sessions (
    session_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    refreshable        INTEGER NOT NULL DEFAULT 0,
    is_guest           INTEGER NOT NULL DEFAULT 0,
    created_ts         INTEGER NOT NULL,
    ends_ts            INTEGER NOT NULL DEFAULT 0,
    current_generation INTEGER NOT NULL DEFAULT 0,
    used_generation    INTEGER NOT NULL DEFAULT 0,
    revoked_ts         INTEGER NOT NULL DEFAULT 0,
    revoked_reason     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sessions_by_user_device ON sessions (user_id, device_id);

CREATE TABLE access_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
    session_id INTEGER NOT NULL REFERENCES sessions (session_id),
    generation INTEGER NOT NULL,
    issued_ts  INTEGER NOT NULL,
    expires_ts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID, STRICT;
CREATE INDEX access_tokens_by_session ON access_tokens (session_id);

CREATE TABLE refresh_tokens (
    token_hash       BLOB PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
    session_id       INTEGER NOT NULL REFERENCES sessions (session_id),
    generation       INTEGER NOT NULL,
    issued_ts        INTEGER NOT NULL,
    expires_ts       INTEGER NOT NULL DEFAULT 0,
    sealed_successor BLOB NULL
) WITHOUT ROWID, STRICT;
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE security_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL DEFAULT '',
    ts        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX security_events_by_user ON security_events (user_id, id);
)sql"},
    // A session keeps every refresh token it ever had (for reuse detection), but at most one
    // holds a sealed successor: finding it must not walk the whole lineage on every rotation.
    Migration{2, "index of refresh tokens holding a sealed successor", R"sql(
CREATE INDEX refresh_tokens_sealed_by_session ON refresh_tokens (session_id)
    WHERE sealed_successor IS NOT NULL;
)sql"},
    // Registration tokens, and the log of revoked sessions that a running server follows to learn
    // of revocations made by another process (the admin CLI) on the same database.
    Migration{3, "registration tokens and the revocation log", R"sql(
CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY NOT NULL,
    uses_allowed INTEGER NULL,
    pending      INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    expiry_ts    INTEGER NOT NULL DEFAULT 0,
    created_ts   INTEGER NOT NULL
) STRICT;

CREATE TABLE revocation_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL,
    reason     INTEGER NOT NULL,
    ts         INTEGER NOT NULL
) STRICT;
)sql"},
    // Housekeeping deletes old revocation log entries and security events by age: both need an
    // index on ts, or every prune would scan the whole table. The highest pruned log id is kept
    // so that a follower that fell behind can tell it missed entries (one row, id = 1).
    Migration{4, "indexes and marks for pruning old log rows", R"sql(
CREATE INDEX revocation_log_by_ts ON revocation_log (ts);
CREATE INDEX security_events_by_ts ON security_events (ts);
CREATE TABLE revocation_log_pruned (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    through_id INTEGER NOT NULL
) STRICT;
)sql"},
    // User-Interactive Authentication sessions, shared by every process on the database so that
    // the requests of one UIA flow may reach different ones. Ephemeral: housekeeping deletes a
    // row once its 15 minutes are over, oldest first through the created_ts index (which also
    // serves the count of live sessions). flows and completed are JSON (storage/stage_lists.hpp).
    Migration{5, "uia_sessions", R"sql(
CREATE TABLE uia_sessions (
    session_id         TEXT PRIMARY KEY NOT NULL,
    endpoint           TEXT NOT NULL,
    user_id            TEXT NOT NULL DEFAULT '',
    flows              TEXT NOT NULL,
    registration       INTEGER NOT NULL DEFAULT 0,
    created_ts         INTEGER NOT NULL,
    completed          TEXT NOT NULL DEFAULT '[]',
    registration_token TEXT NULL,
    finished           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID, STRICT;
CREATE INDEX uia_sessions_by_created_ts ON uia_sessions (created_ts);
)sql"},
    // Shared rate-limit buckets are used on PostgreSQL only (one SQLite database serves one
    // server process, whose buckets live in its memory); the table exists here too so that
    // both backends have the same tables (migrate-sqlite-to-postgres checks that).
    Migration{6, "shared rate-limit buckets (unused on SQLite)", R"sql(
CREATE TABLE rate_limit_buckets (
    limit_class INTEGER NOT NULL,
    bucket_key  TEXT NOT NULL,
    tat_us      INTEGER NOT NULL,
    PRIMARY KEY (limit_class, bucket_key)
) WITHOUT ROWID, STRICT;
)sql"},
    Migration{7, "client data: account data, filters, profiles, end-to-end keys, to-device", R"sql(
CREATE TABLE stream_positions (
    scope    TEXT NOT NULL,
    stream   TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (scope, stream)
) WITHOUT ROWID, STRICT;
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    data_type  TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
) WITHOUT ROWID, STRICT;
CREATE INDEX account_data_by_position ON account_data (user_id, stream_pos);
CREATE TABLE filters (
    user_id     TEXT NOT NULL,
    filter_id   INTEGER NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
) WITHOUT ROWID, STRICT;
CREATE TABLE profiles (
    user_id     TEXT PRIMARY KEY NOT NULL,
    displayname TEXT NULL,
    avatar_url  TEXT NULL
) WITHOUT ROWID, STRICT;
CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID, STRICT;
CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
) WITHOUT ROWID, STRICT;
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
) WITHOUT ROWID, STRICT;
CREATE TABLE device_list_changes (
    stream_pos INTEGER PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL
) STRICT;
CREATE TABLE to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
) WITHOUT ROWID, STRICT;
CREATE TABLE to_device_messages (
    recipient_user   TEXT NOT NULL,
    recipient_device TEXT NOT NULL,
    stream_pos       INTEGER NOT NULL,
    sender           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    content          TEXT NOT NULL,
    PRIMARY KEY (recipient_user, recipient_device, stream_pos)
) WITHOUT ROWID, STRICT;
)sql"},
    // Rooms and events (storage/room_records.hpp). events.stream_ordering is the rowid: range
    // scans per room and per position are index walks. The counter in stream_positions hands
    // out positions; the single writer makes them visible in order.
    Migration{8, "rooms, events, room state, memberships, transactions, aliases", R"sql(
CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    creator      TEXT NOT NULL,
    created_ts   INTEGER NOT NULL,
    is_public    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID, STRICT;
CREATE INDEX rooms_public ON rooms (room_id) WHERE is_public;

CREATE TABLE events (
    stream_ordering  INTEGER PRIMARY KEY NOT NULL,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL REFERENCES rooms (room_id),
    depth            INTEGER NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT NULL,
    sender           TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    json             TEXT NOT NULL,
    redacted_by      TEXT NULL
) STRICT;
CREATE INDEX events_by_room ON events (room_id, stream_ordering);

CREATE TABLE room_state (
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
) WITHOUT ROWID, STRICT;

CREATE TABLE room_memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering INTEGER NOT NULL,
    forgotten       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID, STRICT;
CREATE INDEX room_memberships_by_user ON room_memberships (user_id, stream_ordering);

CREATE TABLE room_forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID, STRICT;

CREATE TABLE room_transactions (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, txn_id)
) WITHOUT ROWID, STRICT;

CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts INTEGER NOT NULL
) WITHOUT ROWID, STRICT;
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);
)sql"},
    // Read receipts (ReceiptRecord): one row per (room, user, type, thread), replaced as it moves
    // forward; stream_pos is its position on the global "receipts" stream.
    Migration{9, "read receipts", R"sql(
CREATE TABLE receipts (
    room_id               TEXT NOT NULL,
    user_id               TEXT NOT NULL,
    receipt_type          TEXT NOT NULL,
    thread_id             TEXT NOT NULL,
    event_id              TEXT NOT NULL,
    event_stream_ordering INTEGER NOT NULL,
    ts                    INTEGER NOT NULL,
    stream_pos            INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
) WITHOUT ROWID, STRICT;
CREATE INDEX receipts_by_position ON receipts (room_id, stream_pos);
)sql"},
    Migration{10, "cross-signing keys and uploaded key signatures", R"sql(
CREATE TABLE cross_signing_keys (
    user_id    TEXT NOT NULL,
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
) WITHOUT ROWID, STRICT;
CREATE TABLE key_signatures (
    target_user   TEXT NOT NULL,
    target_key    TEXT NOT NULL,
    signer_user   TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature     TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
) WITHOUT ROWID, STRICT;
)sql"},
};

static_assert(versions_are_consecutive(kMigrations), "migration versions must be 1, 2, 3, ...");

constexpr const char* kCreateVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY NOT NULL, applied_ts INTEGER NOT NULL) STRICT";

Result<int> current_version(Connection& conn) {
    auto stmt = conn.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!stmt) return stmt.error();
    auto row = (*stmt)->step();
    if (!row) return row.error();
    return static_cast<int>((*stmt)->column_int(0));
}

Error too_new(int version) { return schema_too_new(version, latest_schema_version()); }

void roll_back(Connection& conn) {
    if (conn.in_transaction()) (void)conn.run("ROLLBACK");
}

// Applies `m` in its own transaction unless another process got there first.
Result<void> apply_one(Connection& conn, const Migration& m) {
    if (auto begin = conn.run("BEGIN IMMEDIATE"); !begin) return begin.error();
    auto version = current_version(conn);
    if (!version) {
        roll_back(conn);
        return version.error();
    }
    if (*version >= m.version) {
        roll_back(conn);
        if (*version > latest_schema_version()) return too_new(*version);
        return {};
    }
    if (auto applied = conn.exec_script(m.sql); !applied) {
        roll_back(conn);
        return errors::internal(fmt::format("applying database migration {} ({}) failed: {}",
                                            m.version, m.name, applied.error().message));
    }
    {
        auto stmt = conn.prepare(
            "INSERT INTO schema_version (version, applied_ts) "
            "VALUES (?1, CAST(strftime('%s', 'now') AS INTEGER) * 1000)");
        if (!stmt) {
            roll_back(conn);
            return stmt.error();
        }
        (*stmt)->bind_int(1, m.version);
        if (auto inserted = (*stmt)->run(); !inserted) {
            roll_back(conn);
            return inserted.error();
        }
    }
    if (auto commit = conn.run("COMMIT"); !commit) {
        roll_back(conn);
        return commit.error();
    }
    myelin::log::app()->info("sqlite: applied database migration {} ({}) to {}", m.version, m.name,
                             conn.path());
    return {};
}

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }

int latest_schema_version() { return kMigrations.back().version; }

Result<int> apply_migrations(Connection& conn) {
    if (auto created = conn.exec_script(kCreateVersionTable); !created) return created.error();
    auto version = current_version(conn);
    if (!version) return version.error();
    if (*version > latest_schema_version()) return too_new(*version);
    for (const Migration& m : kMigrations) {
        if (m.version <= *version) continue;
        if (auto applied = apply_one(conn, m); !applied) return applied.error();
    }
    return current_version(conn);
}

}  // namespace myelin::storage::sqlite
