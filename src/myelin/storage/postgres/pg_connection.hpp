#pragma once

// Thin RAII layer over libpq used by the PostgreSQL backend: a Connection (one PGconn plus the
// statements prepared on it), Params (the values of one execution), Rows/Row (a result read in
// binary format). Everything fallible returns Result; PostgreSQL failures become myelin errors in
// one place (pg_error), which also logs them. The password never reaches a message or a log line.
//
// Thread-safety: none. A Connection belongs to one thread at a time.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/records.hpp"

struct pg_conn;
struct pg_result;

namespace myelin::storage::pg {

// Where and how to connect. `password` may be empty (trust or peer authentication).
struct ConnectionSettings {
    std::string host;
    std::uint16_t port = 5432;
    std::string user;
    std::string password;
    std::string dbname;
    std::string application_name = "myelin";
    bool synchronous_commit = true;  // the session's synchronous_commit (on/off)
    int connect_timeout_s = 5;
};

// SQLSTATEs the backend acts on.
inline constexpr std::string_view kSerializationFailure = "40001";
inline constexpr std::string_view kDeadlockDetected = "40P01";

// The error for a failed `operation` (e.g. "the commit"; it appears in the message) with
// PostgreSQL's SQLSTATE `sqlstate` (empty when the connection broke without one) and primary
// message `detail`, logged at error level with the statement `sql` (may be empty; it never holds
// values, they are parameters). Failures that may pass (connection lost or refused, server
// shutting down or starting, out of disk, memory or connections, a conflicting concurrent
// transaction, a cancelled statement, a read-only server) become errors::unavailable (503
// M_UNKNOWN, Retry-After 5) naming the cause; anything else (constraint violations, bad SQL,
// corrupt data) is a bug or damage and becomes errors::internal (500). A lost serialization race
// (retried by the backend) is logged at debug level only.
[[nodiscard]] Error pg_error(std::string_view sqlstate, std::string_view detail,
                             std::string_view operation, std::string_view sql = {});

// The values of one statement execution, $1, $2, ... in the order added. Integers and text go
// as text (PostgreSQL infers their types from the statement), bytes as binary.
class Params {
public:
    Params& add_int(std::int64_t value);
    Params& add_bool(bool value);
    Params& add_text(std::string_view value);
    // Bytes (BYTEA); an empty span is a zero-length value, not NULL.
    Params& add_bytes(std::span<const std::uint8_t> value);
    Params& add_null();

    int size() const { return static_cast<int>(values_.size()); }
    // Whether a text value holds a NUL byte: query() and query_each() refuse such parameters
    // (400 M_INVALID_PARAM) instead of letting libpq cut the value at the NUL.
    bool holds_nul_text() const { return holds_nul_text_; }
    // Arrays for PQexecPrepared; valid until the next add.
    std::vector<const char*> pointers() const;
    const int* lengths() const { return lengths_.data(); }
    const int* formats() const { return formats_.data(); }

private:
    std::vector<std::string> values_;
    std::vector<bool> null_;
    std::vector<int> lengths_;
    std::vector<int> formats_;
    bool holds_nul_text_ = false;
};

// One row of a binary-format result. Integer columns may be smallint, integer, bigint or boolean.
class Row {
public:
    Row(const pg_result* result, int row) : result_(result), row_(row) {}

    std::int64_t column_int(int column) const;
    bool column_bool(int column) const { return column_int(column) != 0; }
    // The column as text; NULL reads as "".
    std::string column_text(int column) const;
    bool column_is_null(int column) const;
    // The column as bytes; NULL reads as empty.
    std::vector<std::uint8_t> column_blob(int column) const;
    // The column as a TokenHash. Error (500) if it does not hold exactly 32 bytes.
    [[nodiscard]] Result<TokenHash> column_token_hash(int column) const;
    // The column's value exactly as the server sent it in binary format (empty for NULL), valid
    // while the result lives. For bulk reads (the SQLite to PostgreSQL copy).
    std::string_view column_view(int column) const;

private:
    const pg_result* result_;
    int row_;
};

// A finished statement's result (owned). Move-only.
class Rows {
public:
    explicit Rows(pg_result* result) : result_(result) {}
    ~Rows();
    Rows(Rows&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
    Rows& operator=(Rows&&) = delete;
    Rows(const Rows&) = delete;
    Rows& operator=(const Rows&) = delete;

    int size() const;
    bool empty() const { return size() == 0; }
    Row row(int index) const { return Row(result_, index); }
    // Rows inserted, updated or deleted by an INSERT/UPDATE/DELETE (0 for others).
    std::int64_t affected() const;

private:
    pg_result* result_;
};

// One libpq connection and the statements prepared on it.
class Connection {
public:
    // Connects and sets the session up (UTC, synchronous_commit, application_name). Error (503)
    // naming the server (never the password) and PostgreSQL's reason when it cannot connect.
    // What the server sends unasked (notices, the FATAL before it closes an idle connection)
    // goes to the application log at warning level, never raw to stderr.
    [[nodiscard]] static Result<std::unique_ptr<Connection>> open(
        const ConnectionSettings& settings);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Runs `sql` as a prepared statement (prepared on first use, then cached) with `params`;
    // results in binary format. Errors name `operation` (see pg_error).
    [[nodiscard]] Result<Rows> query(std::string_view sql, const Params& params,
                                     std::string_view operation = "a query");
    // Like query(), but hands the rows to `fn` one at a time as they arrive (for results too large
    // to hold at once). Stops early, with fn's error, when fn fails.
    [[nodiscard]] Result<void> query_each(std::string_view sql, const Params& params,
                                          const std::function<Result<void>(const Row&)>& fn,
                                          std::string_view operation = "a query");
    // Runs `sql`, a `COPY ... FROM STDIN`, and streams it what `produce` appends to the buffer
    // it is given (cleared before each call) until produce returns false; returns the rows
    // copied. When produce fails, the COPY is aborted (the transaction with it) and produce's
    // error is returned; other errors name `operation` (see pg_error). Nothing is held in memory
    // beyond one buffer.
    [[nodiscard]] Result<std::int64_t> copy_in(
        const char* sql, const std::function<Result<bool>(std::string& buffer)>& produce,
        std::string_view operation = "a COPY");
    // Runs one or more semicolon-separated statements without parameters (transaction control,
    // migrations). Not prepared.
    [[nodiscard]] Result<void> exec(const char* sql, std::string_view operation = "a query");

    // Waits up to `timeout_ms` for notifications on channels this connection LISTENs to and
    // hands each to `fn(channel, payload)`; returns how many were handed over (0 on timeout).
    // Error (503, logged) when the connection is lost meanwhile. Only for a connection that
    // runs no transaction (a dedicated listener).
    [[nodiscard]] Result<int> wait_for_notifications(
        int timeout_ms, const std::function<void(std::string_view, std::string_view)>& fn);

    // True once the connection to the server is lost; it cannot be used again.
    bool broken() const;
    // Whether a statement failed since clear_failure(). In PostgreSQL a failed statement aborts
    // the transaction, so nothing after it can commit.
    bool failed() const { return first_error_.has_value(); }
    // The SQLSTATE of the first failure since clear_failure() ("" if none, or if the connection
    // broke without one) and the error it was mapped to (only when failed()).
    const std::string& first_failure() const { return first_failure_; }
    const Error& first_error() const { return *first_error_; }
    void clear_failure() {
        first_error_.reset();
        first_failure_.clear();
    }

    // The server process serving this connection (pg_backend_pid), for tests and logs.
    int backend_pid() const;

private:
    explicit Connection(pg_conn* conn) : conn_(conn) {}
    // The cached statement name for `sql`, preparing it first if needed.
    Result<const std::string*> prepared(std::string_view sql, std::string_view operation);
    // Maps a failed result (or a null one) to an error and remembers the failure.
    Error fail(const pg_result* result, std::string_view operation, std::string_view sql);

    struct SqlHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view sql) const {
            return std::hash<std::string_view>{}(sql);
        }
    };

    pg_conn* conn_;
    std::unordered_map<std::string, std::string, SqlHash, std::equal_to<>> statements_;
    std::optional<Error> first_error_;
    std::string first_failure_;
};

}  // namespace myelin::storage::pg
