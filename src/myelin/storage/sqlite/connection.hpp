#pragma once

// Thin RAII layer over the sqlite3 C API used by the SQLite backend: a Connection (one sqlite3
// handle plus its cache of prepared statements) and Statement (one sqlite3_stmt). Everything
// fallible returns Result; SQLite result codes are turned into myelin errors in one place
// (sqlite_error), which also logs them.
//
// Thread-safety: none. A Connection and its statements belong to one thread at a time (the
// handle is opened with SQLITE_OPEN_NOMUTEX); it may be handed to another thread with proper
// synchronisation (e.g. before that thread starts).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/records.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace myelin::storage::sqlite {

// The storage class of one value in a result row.
enum class ColumnType { kInteger, kFloat, kText, kBlob, kNull };

// The error for SQLite result code `rc` raised by `operation` (e.g. "the commit"; it appears in
// the message), logged at error level with the cause, SQLite's own message from `db` (may be
// null), the OS error behind an I/O error and the statement's `sql` (may be empty; it never
// holds values, they are bound), e.g. "sqlite: the commit failed because the file system is
// read-only: disk I/O error (result code 778, OS error 30: Read-only file system) in: COMMIT".
// Environment failures that may pass (disk full or over quota, read-only file or file system,
// permission denied, locked by another connection, I/O error, cannot open, out of memory) become
// errors::unavailable (503 M_UNKNOWN, Retry-After 5) naming the cause; anything else (corrupt
// file, constraint violation, misuse) is a bug or damage and becomes errors::internal (500).
// `call_errno` is errno just after the failed call (set it to 0 before), 0 when unknown: SQLite
// does not record the OS error of every failure (not of a failed COMMIT).
[[nodiscard]] Error sqlite_error(sqlite3* db, int rc, std::string_view operation,
                                 std::string_view sql = {}, int call_errno = 0);

// The cause sqlite_error names for `rc` (e.g. "the disk is full"), or null when `rc` is not an
// environment failure. `db` may be null; `call_errno` as for sqlite_error.
const char* sqlite_environment_cause(sqlite3* db, int rc, int call_errno = 0);

// One prepared statement. Binds never fail on their own: the first bind error is remembered and
// returned by the next step(). Columns and bind indexes follow SQLite (columns from 0, binds
// from 1).
class Statement {
public:
    Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    void bind_int(int index, std::int64_t value);
    void bind_text(int index, std::string_view value);
    // Binds a BLOB; an empty span binds a zero-length BLOB (not NULL).
    void bind_blob(int index, std::span<const std::uint8_t> value);
    void bind_null(int index);

    // Advances the statement: true when a row is available, false when it has finished.
    // Errors: the pending bind error, or the mapped SQLite error (see sqlite_error), whose
    // message names `operation`.
    [[nodiscard]] Result<bool> step(std::string_view operation = "a query");
    // Steps the statement to completion, ignoring rows (for INSERT/UPDATE/DELETE, pragmas).
    [[nodiscard]] Result<void> run(std::string_view operation = "a query");

    std::int64_t column_int(int column) const;
    bool column_bool(int column) const { return column_int(column) != 0; }
    // The column as text; NULL reads as "".
    std::string column_text(int column) const;
    bool column_is_null(int column) const;
    // The column as bytes (BLOB or TEXT); NULL reads as empty.
    std::vector<std::uint8_t> column_blob(int column) const;
    // The column as a TokenHash. Error (500) if it does not hold exactly 32 bytes.
    [[nodiscard]] Result<TokenHash> column_token_hash(int column) const;
    // The storage class of the column's value in the current row.
    ColumnType column_type(int column) const;
    // The bytes of a TEXT or BLOB value without a copy (empty for NULL), valid until the next
    // step() or reset(). For bulk reads (the SQLite to PostgreSQL copy).
    std::string_view column_view(int column) const;

    // Resets the statement and clears its bindings, ending any read it holds open.
    void reset();

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_;
    int bind_rc_ = 0;  // first failed bind's code, SQLITE_OK (0) when none
};

// A borrowed cached statement that is reset (and unbound) when it goes out of scope, so that no
// cached statement keeps a read open between uses. Move-only.
class ScopedStatement {
public:
    explicit ScopedStatement(Statement* stmt) : stmt_(stmt) {}
    ~ScopedStatement();
    ScopedStatement(ScopedStatement&& other) noexcept : stmt_(other.stmt_) {
        other.stmt_ = nullptr;
    }
    ScopedStatement& operator=(ScopedStatement&&) = delete;
    ScopedStatement(const ScopedStatement&) = delete;
    ScopedStatement& operator=(const ScopedStatement&) = delete;

    Statement* operator->() const { return stmt_; }
    Statement& operator*() const { return *stmt_; }

private:
    Statement* stmt_;
};

// How a connection is opened.
struct ConnectionConfig {
    bool read_only = false;  // SQLITE_OPEN_READONLY; otherwise read-write, created if missing
    int busy_timeout_ms = 5000;
    std::string vfs;  // SQLite VFS name; empty: the default one
};

// One sqlite3 handle and the statements prepared on it.
class Connection {
public:
    // Opens the database file at `path` (see ConnectionConfig). Error (503) naming the path
    // and SQLite's reason when it cannot be opened.
    [[nodiscard]] static Result<std::unique_ptr<Connection>> open(const std::string& path,
                                                                  const ConnectionConfig& config);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Runs one or more semicolon-separated statements without result rows (scripts, pragmas).
    // Not cached: for migrations and rare statements.
    [[nodiscard]] Result<void> exec_script(const char* sql);
    // The cached prepared statement for `sql` (prepared on first use), ready for binding.
    // `sql` must be a single statement. Error if it does not compile.
    [[nodiscard]] Result<ScopedStatement> prepare(std::string_view sql);
    // Prepares (cached) and runs a single statement without parameters, e.g. "COMMIT"; errors
    // name `operation`.
    [[nodiscard]] Result<void> run(std::string_view sql, std::string_view operation = "a query");

    // Rows changed by the last INSERT/UPDATE/DELETE on this connection.
    std::int64_t changes() const;
    // Rowid of the last successful INSERT on this connection.
    std::int64_t last_insert_rowid() const;
    // True while a transaction is open (SQLite may end one on its own after I/O errors).
    bool in_transaction() const;

    sqlite3* handle() const { return db_; }
    const std::string& path() const { return path_; }

private:
    Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

    struct SqlHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view sql) const {
            return std::hash<std::string_view>{}(sql);
        }
    };

    sqlite3* db_;
    std::string path_;
    std::unordered_map<std::string, std::unique_ptr<Statement>, SqlHash, std::equal_to<>>
        statements_;
};

}  // namespace myelin::storage::sqlite
