#include "myelin/storage/postgres/pg_migrations.hpp"

#include <array>

#include <fmt/format.h>

#include "myelin/core/log.hpp"

namespace myelin::storage::pg {

namespace {

// Identifiers that must compare and sort byte by byte, as in SQLite, whatever the database's
// locale, use COLLATE "C". Integers are BIGINT so that every parameter is inferred as one. A
// migration, once released, is never edited: changes go into a new, higher-numbered entry.
constexpr std::array kMigrations{
    Migration{1, "accounts, devices, sessions and tokens", R"sql(
CREATE TABLE users (
    user_id       TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',
    is_guest      BOOLEAN NOT NULL DEFAULT FALSE,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated   BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT COLLATE "C" NOT NULL,
    device_id    TEXT COLLATE "C" NOT NULL,
    display_name TEXT NULL,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT NOT NULL DEFAULT 0,
    last_seen_ip TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE sessions (
    session_id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            TEXT COLLATE "C" NOT NULL,
    device_id          TEXT COLLATE "C" NOT NULL,
    refreshable        BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest           BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts         BIGINT NOT NULL,
    ends_ts            BIGINT NOT NULL DEFAULT 0,
    current_generation BIGINT NOT NULL DEFAULT 0,
    used_generation    BIGINT NOT NULL DEFAULT 0,
    revoked_ts         BIGINT NOT NULL DEFAULT 0,
    revoked_reason     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_user_device ON sessions (user_id, device_id);

CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id BIGINT NOT NULL REFERENCES sessions (session_id),
    generation BIGINT NOT NULL,
    issued_ts  BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX access_tokens_by_session ON access_tokens (session_id);

CREATE TABLE refresh_tokens (
    token_hash       BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id       BIGINT NOT NULL REFERENCES sessions (session_id),
    generation       BIGINT NOT NULL,
    issued_ts        BIGINT NOT NULL,
    expires_ts       BIGINT NOT NULL DEFAULT 0,
    sealed_successor BYTEA NULL
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE security_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id   TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    ts        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX security_events_by_user ON security_events (user_id, id);
)sql"},
    // A session keeps every refresh token it ever had (for reuse detection), but at most one
    // holds a sealed successor: finding it must not walk the whole lineage on every rotation.
    Migration{2, "index of refresh tokens holding a sealed successor", R"sql(
CREATE INDEX refresh_tokens_sealed_by_session ON refresh_tokens (session_id)
    WHERE sealed_successor IS NOT NULL;
)sql"},
    // Registration tokens, and the log of revoked sessions that running servers follow to learn
    // of revocations made by other processes on the same database.
    Migration{3, "registration tokens and the revocation log", R"sql(
CREATE TABLE registration_tokens (
    token        TEXT COLLATE "C" PRIMARY KEY,
    uses_allowed BIGINT NULL,
    pending      BIGINT NOT NULL DEFAULT 0,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_ts    BIGINT NOT NULL DEFAULT 0,
    created_ts   BIGINT NOT NULL
);

CREATE TABLE revocation_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id BIGINT NOT NULL,
    reason     BIGINT NOT NULL,
    ts         BIGINT NOT NULL
);
)sql"},
    // Housekeeping deletes old revocation log entries and security events by age: both need an
    // index on ts, or every prune would scan the whole table. The highest pruned log id is kept
    // so that a follower that fell behind can tell it missed entries (one row, id = 1).
    Migration{4, "indexes and marks for pruning old log rows", R"sql(
CREATE INDEX revocation_log_by_ts ON revocation_log (ts);
CREATE INDEX security_events_by_ts ON security_events (ts);
CREATE TABLE revocation_log_pruned (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    through_id BIGINT NOT NULL
);
)sql"},
    // User-Interactive Authentication sessions, shared by every instance on the database so that
    // the requests of one UIA flow may reach different ones. Ephemeral: housekeeping deletes a
    // row once its 15 minutes are over, oldest first through the created_ts index (which also
    // serves the count of live sessions). flows and completed are JSON text
    // (storage/stage_lists.hpp). Not UNLOGGED: a row may hold a registration token reservation,
    // which would leak if a crash emptied the table.
    Migration{5, "uia_sessions", R"sql(
CREATE TABLE uia_sessions (
    session_id         TEXT COLLATE "C" PRIMARY KEY,
    endpoint           TEXT NOT NULL,
    user_id            TEXT COLLATE "C" NOT NULL DEFAULT '',
    flows              TEXT NOT NULL,
    registration       BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts         BIGINT NOT NULL,
    completed          TEXT NOT NULL DEFAULT '[]',
    registration_token TEXT COLLATE "C" NULL,
    finished           BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX uia_sessions_by_created_ts ON uia_sessions (created_ts);
)sql"},
    // Ephemeral: lost buckets only refill, so no WAL (and nothing to copy when migrating).
    Migration{6, "shared rate-limit buckets", R"sql(
CREATE UNLOGGED TABLE rate_limit_buckets (
    limit_class BIGINT NOT NULL,
    bucket_key  TEXT COLLATE "C" NOT NULL,
    tat_us      BIGINT NOT NULL,
    PRIMARY KEY (limit_class, bucket_key)
);
CREATE INDEX rate_limit_buckets_by_tat ON rate_limit_buckets (tat_us);
)sql"},
    Migration{7, "client data: account data, filters, profiles, end-to-end keys, to-device", R"sql(
CREATE TABLE stream_positions (
    scope    TEXT COLLATE "C" NOT NULL,
    stream   TEXT COLLATE "C" NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (scope, stream)
);
CREATE TABLE account_data (
    user_id    TEXT COLLATE "C" NOT NULL,
    room_id    TEXT COLLATE "C" NOT NULL,
    data_type  TEXT COLLATE "C" NOT NULL,
    content    TEXT COLLATE "C" NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_by_position ON account_data (user_id, stream_pos);
CREATE TABLE filters (
    user_id     TEXT COLLATE "C" NOT NULL,
    filter_id   BIGINT NOT NULL,
    filter_json TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
CREATE TABLE profiles (
    user_id     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    displayname TEXT NULL,
    avatar_url  TEXT NULL
);
CREATE TABLE device_keys (
    user_id   TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    key_json  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE one_time_keys (
    user_id   TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    algorithm TEXT COLLATE "C" NOT NULL,
    key_id    TEXT COLLATE "C" NOT NULL,
    key_json  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE TABLE fallback_keys (
    user_id   TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    algorithm TEXT COLLATE "C" NOT NULL,
    key_id    TEXT COLLATE "C" NOT NULL,
    key_json  TEXT COLLATE "C" NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);
CREATE TABLE device_list_changes (
    stream_pos BIGINT PRIMARY KEY NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL
);
CREATE TABLE to_device_txns (
    user_id    TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    txn_id     TEXT COLLATE "C" NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE TABLE to_device_messages (
    recipient_user   TEXT COLLATE "C" NOT NULL,
    recipient_device TEXT COLLATE "C" NOT NULL,
    stream_pos       BIGINT NOT NULL,
    sender           TEXT COLLATE "C" NOT NULL,
    event_type       TEXT COLLATE "C" NOT NULL,
    content          TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (recipient_user, recipient_device, stream_pos)
);
)sql"},
    // Rooms and events (storage/room_records.hpp). Stream positions come from the counter row
    // in stream_positions, updated in the write job's SERIALIZABLE transaction: event writes on
    // any number of connections and processes are serialised by it, so positions become visible
    // in order.
    Migration{8, "rooms, events, room state, memberships, transactions, aliases", R"sql(
CREATE TABLE rooms (
    room_id      TEXT COLLATE "C" PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator      TEXT COLLATE "C" NOT NULL,
    created_ts   BIGINT NOT NULL,
    is_public    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX rooms_public ON rooms (room_id) WHERE is_public;

CREATE TABLE events (
    stream_ordering  BIGINT PRIMARY KEY,
    event_id         TEXT COLLATE "C" NOT NULL UNIQUE,
    room_id          TEXT COLLATE "C" NOT NULL REFERENCES rooms (room_id),
    depth            BIGINT NOT NULL,
    type             TEXT COLLATE "C" NOT NULL,
    state_key        TEXT COLLATE "C" NULL,
    sender           TEXT COLLATE "C" NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json             TEXT NOT NULL,
    redacted_by      TEXT COLLATE "C" NULL
);
CREATE INDEX events_by_room ON events (room_id, stream_ordering);

CREATE TABLE room_state (
    room_id   TEXT COLLATE "C" NOT NULL,
    type      TEXT COLLATE "C" NOT NULL,
    state_key TEXT COLLATE "C" NOT NULL,
    event_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

CREATE TABLE room_memberships (
    room_id         TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT COLLATE "C" NOT NULL,
    stream_ordering BIGINT NOT NULL,
    forgotten       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_by_user ON room_memberships (user_id, stream_ordering);

CREATE TABLE room_forward_extremities (
    room_id  TEXT COLLATE "C" NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE room_transactions (
    user_id   TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    room_id   TEXT COLLATE "C" NOT NULL,
    txn_id    TEXT COLLATE "C" NOT NULL,
    event_id  TEXT COLLATE "C" NOT NULL,
    ts        BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, txn_id)
);

CREATE TABLE room_aliases (
    alias      TEXT COLLATE "C" PRIMARY KEY,
    room_id    TEXT COLLATE "C" NOT NULL,
    creator    TEXT COLLATE "C" NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);
)sql"},
    Migration{9, "read receipts", R"sql(
CREATE TABLE receipts (
    room_id               TEXT COLLATE "C" NOT NULL,
    user_id               TEXT COLLATE "C" NOT NULL,
    receipt_type          TEXT COLLATE "C" NOT NULL,
    thread_id             TEXT COLLATE "C" NOT NULL,
    event_id              TEXT COLLATE "C" NOT NULL,
    event_stream_ordering BIGINT NOT NULL,
    ts                    BIGINT NOT NULL,
    stream_pos            BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_by_position ON receipts (room_id, stream_pos);
)sql"},
    Migration{10, "cross-signing keys and uploaded key signatures", R"sql(
CREATE TABLE cross_signing_keys (
    user_id    TEXT COLLATE "C" NOT NULL,
    key_type   TEXT COLLATE "C" NOT NULL,
    public_key TEXT COLLATE "C" NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
CREATE TABLE key_signatures (
    target_user   TEXT COLLATE "C" NOT NULL,
    target_key    TEXT COLLATE "C" NOT NULL,
    signer_user   TEXT COLLATE "C" NOT NULL,
    signer_key_id TEXT COLLATE "C" NOT NULL,
    signature     TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
);
)sql"},
};

static_assert(versions_are_consecutive(kMigrations), "migration versions must be 1, 2, 3, ...");

// Taken for the whole of each migration step, so that processes opening the database together
// apply every migration exactly once ("myelin" in ASCII, an arbitrary constant).
constexpr const char* kLockAndCreateVersionTable =
    "SELECT pg_advisory_xact_lock(31381409523566); "
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version BIGINT PRIMARY KEY, applied_ts BIGINT NOT NULL)";

Result<int> current_version(Connection& conn) {
    auto rows = conn.query("SELECT COALESCE(MAX(version), 0) FROM schema_version", Params{},
                           "reading the schema version");
    if (!rows) return rows.error();
    return static_cast<int>(rows->row(0).column_int(0));
}

void roll_back(Connection& conn) {
    if (!conn.broken()) (void)conn.exec("ROLLBACK", "rolling back a migration");
}

// One transaction: applies the migration after the current version, if any. Returns the
// version the database is at afterwards.
Result<int> step(Connection& conn) {
    if (auto begin = conn.exec("BEGIN", "starting a migration"); !begin) return begin.error();
    if (auto locked = conn.exec(kLockAndCreateVersionTable, "preparing the migrations"); !locked) {
        roll_back(conn);
        return locked.error();
    }
    auto version = current_version(conn);
    if (!version) {
        roll_back(conn);
        return version.error();
    }
    if (*version > latest_schema_version()) {
        roll_back(conn);
        return schema_too_new(*version, latest_schema_version());
    }
    if (*version == latest_schema_version()) {
        roll_back(conn);
        return *version;
    }
    const Migration& m = kMigrations[static_cast<std::size_t>(*version)];
    if (auto applied = conn.exec(m.sql, "a migration"); !applied) {
        roll_back(conn);
        return errors::internal(fmt::format("applying database migration {} ({}) failed: {}",
                                            m.version, m.name, applied.error().message));
    }
    auto recorded = conn.query(
        "INSERT INTO schema_version (version, applied_ts) "
        "VALUES ($1, (extract(epoch FROM now()) * 1000)::bigint)",
        Params{}.add_int(m.version), "recording a migration");
    if (!recorded) {
        roll_back(conn);
        return recorded.error();
    }
    if (auto commit = conn.exec("COMMIT", "committing a migration"); !commit) {
        return commit.error();
    }
    myelin::log::app()->info("postgresql: applied database migration {} ({})", m.version, m.name);
    return m.version;
}

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }

int latest_schema_version() { return kMigrations.back().version; }

Result<int> apply_migrations(Connection& conn) {
    for (;;) {
        auto version = step(conn);
        if (!version) return version.error();
        if (*version == latest_schema_version()) return *version;
    }
}

}  // namespace myelin::storage::pg
