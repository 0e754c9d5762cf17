#include "myelin/storage/sqlite/connection.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <sqlite3.h>

#include "myelin/core/log.hpp"

namespace myelin::storage::sqlite {

namespace {

// A cause an operator can act on, for the result codes that describe the environment; null for
// the others. For an I/O error or a file that cannot be opened, the OS error (`system_errno`,
// 0 when unknown) tells more than SQLite's code: a read-only file system or a lost permission
// reaches SQLite as a failed write (SQLITE_IOERR_WRITE), a full disk may show only at fsync.
const char* environment_cause(int rc, int system_errno) {
    const int primary = rc & 0xff;
    if (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN) {
        switch (system_errno) {
            case ENOSPC:
                return "the disk is full";
            case EDQUOT:
                return "the disk quota is exceeded";
            case EROFS:
                return "the file system is read-only";
            case EACCES:
            case EPERM:
                return "permission to write the database files is denied";
            default:
                break;
        }
    }
    switch (primary) {
        case SQLITE_FULL:
            return "the disk is full";
        case SQLITE_READONLY:
            return "the database file is read-only";
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return "the database is locked by another connection or process";
        case SQLITE_IOERR:
            return "a disk I/O error occurred";
        case SQLITE_CANTOPEN:
            return "the database file cannot be opened";
        case SQLITE_NOMEM:
            return "out of memory";
        default:
            return nullptr;
    }
}

// The OS error behind `rc`, or 0: only for SQLITE_IOERR and SQLITE_CANTOPEN (for other codes
// any errno would be stale). SQLite's own record (sqlite3_system_errno) when it has one; it
// keeps none for a failed COMMIT, so otherwise `call_errno`, the thread's errno just after the
// failed call.
int system_errno_of(sqlite3* db, int rc, int call_errno) {
    const int primary = rc & 0xff;
    if (primary != SQLITE_IOERR && primary != SQLITE_CANTOPEN) return 0;
    const int recorded = db != nullptr ? sqlite3_system_errno(db) : 0;
    return recorded != 0 ? recorded : call_errno;
}

}  // namespace

const char* sqlite_environment_cause(sqlite3* db, int rc, int call_errno) {
    return environment_cause(rc, system_errno_of(db, rc, call_errno));
}

Error sqlite_error(sqlite3* db, int rc, std::string_view operation, std::string_view sql,
                   int call_errno) {
    const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    const int system_errno = system_errno_of(db, rc, call_errno);
    const std::string os_error = system_errno != 0
                                     ? fmt::format(", OS error {}: {}", system_errno,
                                                   std::system_category().message(system_errno))
                                     : std::string();
    const char* cause = environment_cause(rc, system_errno);
    myelin::log::app()->error("sqlite: {} failed{}{}: {} (result code {}{}){}{}", operation,
                              cause != nullptr ? " because " : "", cause != nullptr ? cause : "",
                              detail, rc, os_error, sql.empty() ? "" : " in: ", sql);
    if (cause != nullptr) {
        return errors::unavailable(
            fmt::format("The database is unavailable: {} failed because {}", operation, cause), 5);
    }
    return errors::internal(fmt::format("Database error: {} failed ({})", operation, detail));
}

// ---- Statement ----------------------------------------------------------------------------

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::bind_int(int index, std::int64_t value) {
    const int rc = sqlite3_bind_int64(stmt_, index, value);
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

void Statement::bind_text(int index, std::string_view value) {
    const int rc = sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT,
                                       SQLITE_UTF8);
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

void Statement::bind_blob(int index, std::span<const std::uint8_t> value) {
    // sqlite3_bind_blob64 binds NULL for a null pointer; an empty span must stay a BLOB.
    static const std::uint8_t kEmpty = 0;
    const void* data = value.empty() ? &kEmpty : value.data();
    const int rc = sqlite3_bind_blob64(stmt_, index, data, value.size(), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

void Statement::bind_null(int index) {
    const int rc = sqlite3_bind_null(stmt_, index);
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

Result<bool> Statement::step(std::string_view operation) {
    if (bind_rc_ != SQLITE_OK) {
        return sqlite_error(db_, bind_rc_, "binding a query parameter", sqlite3_sql(stmt_));
    }
    errno = 0;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    const int call_errno = errno;
    return sqlite_error(db_, rc, operation, sqlite3_sql(stmt_), call_errno);
}

Result<void> Statement::run(std::string_view operation) {
    for (;;) {
        auto row = step(operation);
        if (!row) return row.error();
        if (!*row) return {};
    }
}

std::int64_t Statement::column_int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::column_text(int column) const {
    const auto* text = sqlite3_column_text(stmt_, column);
    if (text == nullptr) return {};
    const int size = sqlite3_column_bytes(stmt_, column);
    return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(size));
}

bool Statement::column_is_null(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::vector<std::uint8_t> Statement::column_blob(int column) const {
    const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, column));
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return {};
    return std::vector<std::uint8_t>(data, data + size);
}

Result<TokenHash> Statement::column_token_hash(int column) const {
    const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, column));
    const int size = sqlite3_column_bytes(stmt_, column);
    TokenHash hash{};
    if (data == nullptr || static_cast<std::size_t>(size) != hash.size()) {
        myelin::log::app()->error("sqlite: a stored token hash has {} bytes instead of 32", size);
        return errors::internal("Database error: a stored token hash is malformed");
    }
    std::memcpy(hash.data(), data, hash.size());
    return hash;
}

ColumnType Statement::column_type(int column) const {
    switch (sqlite3_column_type(stmt_, column)) {
        case SQLITE_INTEGER:
            return ColumnType::kInteger;
        case SQLITE_FLOAT:
            return ColumnType::kFloat;
        case SQLITE_TEXT:
            return ColumnType::kText;
        case SQLITE_BLOB:
            return ColumnType::kBlob;
        default:
            return ColumnType::kNull;
    }
}

std::string_view Statement::column_view(int column) const {
    // sqlite3_column_blob returns a TEXT value's bytes unchanged; bytes() after it is the size.
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return {};
    return std::string_view(data, static_cast<std::size_t>(size));
}

void Statement::reset() {
    // reset() repeats the last step's error code, which was already reported by step().
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bind_rc_ = SQLITE_OK;
}

ScopedStatement::~ScopedStatement() {
    if (stmt_ != nullptr) stmt_->reset();
}

// ---- Connection ---------------------------------------------------------------------------

namespace {

// A new database file is created here, readable by its owner only, before SQLite opens it:
// SQLite would create it with the process umask (usually 0644), and it holds password hashes.
// Its -wal and -shm files take the database file's mode. An existing file is left as it is.
void create_private_file(const std::string& path) {
    if (path.empty() || path == ":memory:" || path.starts_with("file:")) return;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);  // EEXIST and every other failure: SQLite reports its own
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::open(const std::string& path,
                                                     const ConnectionConfig& config) {
    if (!config.read_only) create_private_file(path);
    sqlite3* db = nullptr;
    const int flags =
        (config.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
        SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags,
                                   config.vfs.empty() ? nullptr : config.vfs.c_str());
    if (rc != SQLITE_OK) {
        const std::string reason = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close_v2(db);
        myelin::log::app()->error("sqlite: cannot open database '{}': {}", path, reason);
        return errors::unavailable(fmt::format("cannot open database '{}': {}", path, reason), 5);
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, config.busy_timeout_ms);
    return std::unique_ptr<Connection>(new Connection(db, path));
}

Connection::~Connection() {
    statements_.clear();  // finalize every statement before closing the handle
    sqlite3_close_v2(db_);
}

Result<void> Connection::exec_script(const char* sql) {
    char* message = nullptr;
    errno = 0;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
    const int call_errno = errno;
    sqlite3_free(message);  // sqlite3_errmsg(db_) still holds it for sqlite_error
    if (rc != SQLITE_OK) return sqlite_error(db_, rc, "a SQL script", {}, call_errno);
    return {};
}

Result<ScopedStatement> Connection::prepare(std::string_view sql) {
    auto found = statements_.find(sql);
    if (found != statements_.end()) return ScopedStatement(found->second.get());
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return sqlite_error(db_, rc, "preparing a query", sql);
    }
    if (stmt == nullptr) return errors::internal("Database error: an empty SQL statement");
    auto inserted =
        statements_.emplace(std::string(sql), std::make_unique<Statement>(db_, stmt)).first;
    return ScopedStatement(inserted->second.get());
}

Result<void> Connection::run(std::string_view sql, std::string_view operation) {
    auto stmt = prepare(sql);
    if (!stmt) return stmt.error();
    return (*stmt)->run(operation);
}

std::int64_t Connection::changes() const { return sqlite3_changes64(db_); }

std::int64_t Connection::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

bool Connection::in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

}  // namespace myelin::storage::sqlite
