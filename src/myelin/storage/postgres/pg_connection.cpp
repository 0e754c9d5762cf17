#include "myelin/storage/postgres/pg_connection.hpp"

#include <endian.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "myelin/core/log.hpp"
#include "myelin/storage/postgres/libpq_library.hpp"

namespace myelin::storage::pg {

namespace {

// A cause an operator can act on, for the SQLSTATEs that describe the environment.
const char* environment_cause(std::string_view sqlstate) {
    if (sqlstate.empty()) return "the connection to PostgreSQL was lost";
    const std::string_view klass = sqlstate.substr(0, 2);
    if (klass == "08") return "the connection to PostgreSQL failed";
    if (klass == "53") return "PostgreSQL is out of disk space, memory or connections";
    if (klass == "58") return "PostgreSQL had an I/O error";
    if (sqlstate == "57P01" || sqlstate == "57P02") {
        return "the PostgreSQL connection was terminated";
    }
    if (sqlstate == "57P03") return "PostgreSQL is starting up or shutting down";
    if (sqlstate == "57014") return "the statement was cancelled";
    if (sqlstate == kSerializationFailure || sqlstate == kDeadlockDetected) {
        return "concurrent transactions kept conflicting";
    }
    if (sqlstate == "55P03") return "a lock was not available";
    if (sqlstate == "25006") return "PostgreSQL is read-only";
    return nullptr;
}

std::string_view field(const PGresult* result, int code) {
    if (result == nullptr) return {};
    const char* value = libpq().PQresultErrorField(result, code);
    return value != nullptr ? std::string_view(value) : std::string_view();
}

// `message` on one line: libpq's messages end in a newline and continue on lines that start
// with a tab.
std::string one_line(std::string message) {
    while (!message.empty() &&
           (message.back() == '\n' || message.back() == ' ' || message.back() == '\t')) {
        message.pop_back();
    }
    std::replace(message.begin(), message.end(), '\n', ' ');
    std::replace(message.begin(), message.end(), '\t', ' ');
    return message;
}

// libpq's connection message, on one line.
std::string connection_message(const PGconn* conn) {
    return one_line(conn != nullptr ? libpq().PQerrorMessage(conn) : "out of memory");
}

// What the server sends outside an answer to a query: notices and warnings, and the FATAL it
// sends an idle connection before closing it (shutdown, pg_terminate_backend). libpq would print
// them to stderr as they are; they go to the application log instead, at warning level.
void log_server_notice(void* /*unused*/, const char* message) {
    myelin::log::app()->warn("postgresql: the server says: {}",
                             one_line(message != nullptr ? message : ""));
}

}  // namespace

Error pg_error(std::string_view sqlstate, std::string_view detail, std::string_view operation,
               std::string_view sql) {
    // A lost serialization race is routine under SERIALIZABLE: the job is run again.
    const bool race = sqlstate == kSerializationFailure || sqlstate == kDeadlockDetected;
    myelin::log::app()->log(race ? spdlog::level::debug : spdlog::level::err,
                            "postgresql: {} failed: {} (SQLSTATE {}){}{}", operation, detail,
                            sqlstate.empty() ? "none" : sqlstate, sql.empty() ? "" : " in: ", sql);
    if (const char* cause = environment_cause(sqlstate)) {
        return errors::unavailable(
            fmt::format("The database is unavailable: {} failed because {}", operation, cause), 5);
    }
    return errors::internal(fmt::format("Database error: {} failed ({})", operation, detail));
}

// ---- Params -------------------------------------------------------------------------------

namespace {

// Text parameters travel NUL-terminated: libpq would send "a\0b" as "a". The API refuses NULs
// in what it reads; a value that still holds one is refused here rather than stored cut short.
Error nul_text_error() {
    return errors::invalid_param("Text containing a NUL character cannot be stored");
}

}  // namespace

Params& Params::add_int(std::int64_t value) { return add_text(std::to_string(value)); }

Params& Params::add_bool(bool value) { return add_text(value ? "true" : "false"); }

Params& Params::add_text(std::string_view value) {
    if (value.find('\0') != std::string_view::npos) holds_nul_text_ = true;
    values_.emplace_back(value);
    null_.push_back(false);
    lengths_.push_back(static_cast<int>(value.size()));
    formats_.push_back(0);
    return *this;
}

Params& Params::add_bytes(std::span<const std::uint8_t> value) {
    // An empty span may have a null data(): keep an empty (non-NULL) value instead.
    if (value.empty()) {
        values_.emplace_back();
    } else {
        values_.emplace_back(reinterpret_cast<const char*>(value.data()), value.size());
    }
    null_.push_back(false);
    lengths_.push_back(static_cast<int>(value.size()));
    formats_.push_back(1);
    return *this;
}

Params& Params::add_null() {
    values_.emplace_back();
    null_.push_back(true);
    lengths_.push_back(0);
    formats_.push_back(0);
    return *this;
}

std::vector<const char*> Params::pointers() const {
    std::vector<const char*> out;
    out.reserve(values_.size());
    for (std::size_t i = 0; i < values_.size(); ++i) {
        out.push_back(null_[i] ? nullptr : values_[i].data());
    }
    return out;
}

// ---- Row / Rows ---------------------------------------------------------------------------

std::int64_t Row::column_int(int column) const {
    if (libpq().PQgetisnull(result_, row_, column)) return 0;
    const char* data = libpq().PQgetvalue(result_, row_, column);
    switch (libpq().PQgetlength(result_, row_, column)) {
        case 1:
            return static_cast<unsigned char>(data[0]);
        case 2: {
            std::uint16_t v = 0;
            std::memcpy(&v, data, sizeof v);
            return static_cast<std::int16_t>(be16toh(v));
        }
        case 4: {
            std::uint32_t v = 0;
            std::memcpy(&v, data, sizeof v);
            return static_cast<std::int32_t>(be32toh(v));
        }
        case 8: {
            std::uint64_t v = 0;
            std::memcpy(&v, data, sizeof v);
            return static_cast<std::int64_t>(be64toh(v));
        }
        default:
            return 0;
    }
}

std::string Row::column_text(int column) const {
    if (libpq().PQgetisnull(result_, row_, column)) return {};
    return std::string(libpq().PQgetvalue(result_, row_, column),
                       static_cast<std::size_t>(libpq().PQgetlength(result_, row_, column)));
}

bool Row::column_is_null(int column) const {
    return libpq().PQgetisnull(result_, row_, column) != 0;
}

std::vector<std::uint8_t> Row::column_blob(int column) const {
    if (libpq().PQgetisnull(result_, row_, column)) return {};
    const auto* data =
        reinterpret_cast<const std::uint8_t*>(libpq().PQgetvalue(result_, row_, column));
    return std::vector<std::uint8_t>(data, data + libpq().PQgetlength(result_, row_, column));
}

Result<TokenHash> Row::column_token_hash(int column) const {
    TokenHash hash{};
    const int size = libpq().PQgetisnull(result_, row_, column)
                         ? -1
                         : libpq().PQgetlength(result_, row_, column);
    if (size != static_cast<int>(hash.size())) {
        myelin::log::app()->error("postgresql: a stored token hash has {} bytes instead of 32",
                                  size);
        return errors::internal("Database error: a stored token hash is malformed");
    }
    std::memcpy(hash.data(), libpq().PQgetvalue(result_, row_, column), hash.size());
    return hash;
}

std::string_view Row::column_view(int column) const {
    if (libpq().PQgetisnull(result_, row_, column)) return {};
    return std::string_view(libpq().PQgetvalue(result_, row_, column),
                            static_cast<std::size_t>(libpq().PQgetlength(result_, row_, column)));
}

Rows::~Rows() { libpq().PQclear(result_); }

int Rows::size() const { return libpq().PQntuples(result_); }

std::int64_t Rows::affected() const {
    const char* tuples = libpq().PQcmdTuples(result_);
    if (tuples == nullptr || *tuples == '\0') return 0;
    return std::strtoll(tuples, nullptr, 10);
}

// ---- Connection ---------------------------------------------------------------------------

Result<std::unique_ptr<Connection>> Connection::open(const ConnectionSettings& settings) {
    if (auto loaded = load_libpq(); !loaded) {
        myelin::log::app()->error("postgresql: {}", loaded.error().message);
        return loaded.error();
    }
    const std::string port = std::to_string(settings.port);
    const std::string timeout = std::to_string(settings.connect_timeout_s);
    // Session settings travel in the startup packet: no extra round trip.
    const std::string options =
        std::string(
            "-c TimeZone=UTC -c client_encoding=UTF8 -c client_min_messages=warning "
            "-c synchronous_commit=") +
        (settings.synchronous_commit ? "on" : "off");
    const char* keywords[] = {"host",
                              "port",
                              "user",
                              "password",
                              "dbname",
                              "application_name",
                              "connect_timeout",
                              "options",
                              "keepalives",
                              "keepalives_idle",
                              nullptr};
    const char* values[] = {settings.host.c_str(),
                            port.c_str(),
                            settings.user.c_str(),
                            settings.password.empty() ? nullptr : settings.password.c_str(),
                            settings.dbname.c_str(),
                            settings.application_name.c_str(),
                            timeout.c_str(),
                            options.c_str(),
                            "1",
                            "30",
                            nullptr};
    PGconn* conn = libpq().PQconnectdbParams(keywords, values, 0);
    if (conn == nullptr || libpq().PQstatus(conn) != CONNECTION_OK) {
        // libpq's message names host, port and user and PostgreSQL's reason, never the password.
        const std::string reason = connection_message(conn);
        libpq().PQfinish(conn);
        myelin::log::app()->error("postgresql: cannot connect to {}@{}:{}/{}: {}", settings.user,
                                  settings.host, settings.port, settings.dbname, reason);
        return errors::unavailable(
            fmt::format("cannot connect to database postgresql://{}@{}:{}/{}: {}", settings.user,
                        settings.host, settings.port, settings.dbname, reason),
            5);
    }
    libpq().PQsetNoticeProcessor(conn, &log_server_notice, nullptr);
    return std::unique_ptr<Connection>(new Connection(conn));
}

Connection::~Connection() { libpq().PQfinish(conn_); }

bool Connection::broken() const { return libpq().PQstatus(conn_) != CONNECTION_OK; }

int Connection::backend_pid() const { return libpq().PQbackendPID(conn_); }

Result<int> Connection::wait_for_notifications(
    int timeout_ms, const std::function<void(std::string_view, std::string_view)>& fn) {
    const auto deliver = [&] {
        int delivered = 0;
        while (PGnotify* note = libpq().PQnotifies(conn_)) {
            fn(note->relname, note->extra);
            libpq().PQfreemem(note);
            ++delivered;
        }
        return delivered;
    };
    if (const int ready = deliver(); ready > 0) return ready;
    const int sock = libpq().PQsocket(conn_);
    if (sock < 0) return fail(nullptr, "waiting for notifications", {});
    pollfd pfd{sock, POLLIN, 0};
    const int polled = ::poll(&pfd, 1, timeout_ms);
    if (polled == 0) return 0;
    if (polled < 0 && errno == EINTR) return 0;
    if (polled < 0) return fail(nullptr, "waiting for notifications", {});
    if (libpq().PQconsumeInput(conn_) == 0) return fail(nullptr, "waiting for notifications", {});
    return deliver();
}

Error Connection::fail(const PGresult* result, std::string_view operation, std::string_view sql) {
    std::string sqlstate(field(result, PG_DIAG_SQLSTATE));
    std::string detail(field(result, PG_DIAG_MESSAGE_PRIMARY));
    if (detail.empty()) detail = connection_message(conn_);
    Error error = pg_error(sqlstate, detail, operation, sql);
    if (!first_error_) {
        first_error_ = error;
        first_failure_ = sqlstate;
    }
    return error;
}

Result<const std::string*> Connection::prepared(std::string_view sql, std::string_view operation) {
    auto found = statements_.find(sql);
    if (found != statements_.end()) return &found->second;
    std::string name = "s" + std::to_string(statements_.size() + 1);
    const std::string text(sql);
    PGresult* result = libpq().PQprepare(conn_, name.c_str(), text.c_str(), 0, nullptr);
    if (result == nullptr || libpq().PQresultStatus(result) != PGRES_COMMAND_OK) {
        Error error = fail(result, operation, sql);
        libpq().PQclear(result);
        return error;
    }
    libpq().PQclear(result);
    return &statements_.emplace(text, std::move(name)).first->second;
}

Result<Rows> Connection::query(std::string_view sql, const Params& params,
                               std::string_view operation) {
    if (params.holds_nul_text()) return nul_text_error();
    auto name = prepared(sql, operation);
    if (!name) return name.error();
    const auto values = params.pointers();
    PGresult* result = libpq().PQexecPrepared(conn_, (*name)->c_str(), params.size(), values.data(),
                                              params.lengths(), params.formats(), 1);
    const auto status = result != nullptr ? libpq().PQresultStatus(result) : PGRES_FATAL_ERROR;
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        Error error = fail(result, operation, sql);
        libpq().PQclear(result);
        return error;
    }
    return Rows(result);
}

Result<void> Connection::query_each(std::string_view sql, const Params& params,
                                    const std::function<Result<void>(const Row&)>& fn,
                                    std::string_view operation) {
    if (params.holds_nul_text()) return nul_text_error();
    auto name = prepared(sql, operation);
    if (!name) return name.error();
    const auto values = params.pointers();
    if (libpq().PQsendQueryPrepared(conn_, (*name)->c_str(), params.size(), values.data(),
                                    params.lengths(), params.formats(), 1) != 1) {
        return fail(nullptr, operation, sql);
    }
    libpq().PQsetSingleRowMode(conn_);
    Result<void> outcome;
    bool done = false;
    // Every result must be read, also after an error, before the connection takes a new query.
    while (PGresult* result = libpq().PQgetResult(conn_)) {
        const auto status = libpq().PQresultStatus(result);
        if (status == PGRES_SINGLE_TUPLE) {
            if (outcome && !done) outcome = fn(Row(result, 0));
        } else if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
            done = true;
        } else if (outcome) {
            outcome = fail(result, operation, sql);
        }
        libpq().PQclear(result);
    }
    if (outcome && !done) return fail(nullptr, operation, sql);
    return outcome;
}

Result<std::int64_t> Connection::copy_in(
    const char* sql, const std::function<Result<bool>(std::string& buffer)>& produce,
    std::string_view operation) {
    PGresult* started = libpq().PQexec(conn_, sql);
    if (started == nullptr || libpq().PQresultStatus(started) != PGRES_COPY_IN) {
        Error error = fail(started, operation, sql);
        libpq().PQclear(started);
        return error;
    }
    libpq().PQclear(started);
    std::string buffer;
    std::optional<Error> producer_error;
    for (;;) {
        buffer.clear();
        auto more = produce(buffer);
        if (!more) {
            producer_error = more.error();
            break;
        }
        if (!buffer.empty() &&
            libpq().PQputCopyData(conn_, buffer.data(), static_cast<int>(buffer.size())) != 1) {
            break;  // the connection failed: PQgetResult below reports it
        }
        if (!*more) break;
    }
    (void)libpq().PQputCopyEnd(conn_, producer_error ? "aborted by myelin" : nullptr);
    Result<std::int64_t> outcome = std::int64_t{0};
    bool done = false;
    // Every result must be read before the connection takes a new query.
    while (PGresult* result = libpq().PQgetResult(conn_)) {
        const auto status = libpq().PQresultStatus(result);
        if (status == PGRES_COMMAND_OK) {
            const char* tuples = libpq().PQcmdTuples(result);
            if (tuples != nullptr && *tuples != '\0') outcome = std::strtoll(tuples, nullptr, 10);
            done = true;
        } else if (producer_error) {
            // The server's answer to our own abort: the producer's error is the one to report.
            if (!first_error_) first_error_ = *producer_error;
        } else if (outcome) {
            outcome = fail(result, operation, sql);
        }
        libpq().PQclear(result);
    }
    if (producer_error) return *producer_error;
    if (outcome && !done) return fail(nullptr, operation, sql);
    return outcome;
}

Result<void> Connection::exec(const char* sql, std::string_view operation) {
    PGresult* result = libpq().PQexec(conn_, sql);
    const auto status = result != nullptr ? libpq().PQresultStatus(result) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        Error error = fail(result, operation, sql);
        libpq().PQclear(result);
        return error;
    }
    libpq().PQclear(result);
    return {};
}

}  // namespace myelin::storage::pg
