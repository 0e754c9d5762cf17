#include "myelin/storage/transfer/sqlite_to_postgres.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <memory>
#include <set>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "myelin/storage/postgres/pg_migrations.hpp"
#include "myelin/storage/sqlite/connection.hpp"
#include "myelin/storage/sqlite/migrations.hpp"
#include "myelin/storage/transfer/row_checksum.hpp"
#include "myelin/storage/transfer/table_rules.hpp"

namespace myelin::storage::transfer {

namespace {

// How a column's values travel: read from SQLite as the storage class the PostgreSQL type
// implies, written in that type's binary COPY format, hashed the same way on both sides.
enum class Kind { kInt, kBool, kText, kBytes };

struct Column {
    std::string name;
    Kind kind;
};

constexpr std::string_view kSchemaVersionTable = "schema_version";

std::string quote_ident(std::string_view name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
    return out;
}

std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) {
        if (!out.empty()) out += ", ";
        out += n;
    }
    return out;
}

// ---- Binary COPY encoding (big-endian, see the PostgreSQL COPY documentation) ---------------

void put_be(std::string& out, std::uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((value >> (8 * i)) & 0xff);
}

void put_copy_header(std::string& out) {
    constexpr std::array<char, 11> kSignature{'P',  'G',    'C',  'O',  'P', 'Y',
                                              '\n', '\xff', '\r', '\n', '\0'};
    out.append(kSignature.data(), kSignature.size());
    put_be(out, 0, 4);  // flags: no OIDs
    put_be(out, 0, 4);  // header extension length
}

void put_copy_trailer(std::string& out) { put_be(out, 0xffff, 2); }

void put_field(std::string& out, std::string_view bytes) {
    put_be(out, bytes.size(), 4);
    out.append(bytes);
}

void put_null(std::string& out) { put_be(out, 0xffffffffULL, 4); }

// ---- The SQLite side --------------------------------------------------------------------------

// Ends the read transaction on every path.
class SqliteSnapshot {
public:
    explicit SqliteSnapshot(sqlite::Connection& conn) : conn_(conn) {}
    ~SqliteSnapshot() {
        if (conn_.in_transaction()) (void)conn_.exec_script("ROLLBACK");
    }
    SqliteSnapshot(const SqliteSnapshot&) = delete;
    SqliteSnapshot& operator=(const SqliteSnapshot&) = delete;
    Result<void> begin() { return conn_.exec_script("BEGIN"); }

private:
    sqlite::Connection& conn_;
};

Result<std::unique_ptr<sqlite::Connection>> open_source(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        return errors::internal(fmt::format("there is no SQLite database file at '{}'", path));
    }
    sqlite::ConnectionConfig config;
    config.read_only = true;
    return sqlite::Connection::open(path, config);
}

Result<std::int64_t> single_int(sqlite::Connection& conn, std::string_view sql,
                                std::string_view bind = {}) {
    auto stmt = conn.prepare(sql);
    if (!stmt) return stmt.error();
    if (!bind.empty()) (*stmt)->bind_text(1, bind);
    auto row = (*stmt)->step("reading the SQLite database");
    if (!row) return row.error();
    return *row ? (*stmt)->column_int(0) : 0;
}

Result<bool> sqlite_has_table(sqlite::Connection& conn, std::string_view name) {
    auto count = single_int(
        conn, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1", name);
    if (!count) return count.error();
    return *count > 0;
}

Result<void> check_source_version(sqlite::Connection& conn, const std::string& path) {
    auto has_versions = sqlite_has_table(conn, kSchemaVersionTable);
    if (!has_versions) return has_versions.error();
    if (!*has_versions) {
        return errors::internal(
            fmt::format("'{}' is not a myelin database (it has no schema_version table)", path));
    }
    auto version = single_int(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (!version) return version.error();
    const int latest = sqlite::latest_schema_version();
    if (*version > latest) return schema_too_new(static_cast<int>(*version), latest);
    if (*version < latest) {
        return errors::internal(fmt::format(
            "the SQLite database '{}' is at schema version {}, but this myelin copies only "
            "version {}: start this myelin's server on it once (or run any `myelin admin` "
            "command with a config that names it) to upgrade it, stop the server, then run the "
            "copy again",
            path, *version, latest));
    }
    return {};
}

// The user tables of the SQLite database (not SQLite's own sqlite_* tables).
Result<std::vector<std::string>> sqlite_tables(sqlite::Connection& conn) {
    auto stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' ORDER BY name");
    if (!stmt) return stmt.error();
    std::vector<std::string> names;
    for (;;) {
        auto row = (*stmt)->step("listing the SQLite tables");
        if (!row) return row.error();
        if (!*row) break;
        names.push_back((*stmt)->column_text(0));
    }
    return names;
}

Result<std::set<std::string>> sqlite_columns(sqlite::Connection& conn, std::string_view table) {
    auto stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)");
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, table);
    std::set<std::string> names;
    for (;;) {
        auto row = (*stmt)->step("listing the columns of a SQLite table");
        if (!row) return row.error();
        if (!*row) break;
        names.insert((*stmt)->column_text(0));
    }
    return names;
}

// The highest id SQLite ever handed out for the table's AUTOINCREMENT column (0 when none): it
// may exceed the highest id left in the table (pruned rows).
Result<std::int64_t> sqlite_sequence_of(sqlite::Connection& conn, std::string_view table) {
    auto has_sequences = sqlite_has_table(conn, "sqlite_sequence");
    if (!has_sequences) return has_sequences.error();
    if (!*has_sequences) return 0;
    return single_int(conn, "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = ?1",
                      table);
}

// ---- The PostgreSQL side ----------------------------------------------------------------------

// Rolls the transaction back on every path that did not commit.
class PgTransaction {
public:
    explicit PgTransaction(pg::Connection& conn) : conn_(conn) {}
    ~PgTransaction() {
        if (open_ && !conn_.broken()) (void)conn_.exec("ROLLBACK", "rolling back the copy");
    }
    PgTransaction(const PgTransaction&) = delete;
    PgTransaction& operator=(const PgTransaction&) = delete;

    Result<void> begin() {
        auto begun = conn_.exec("BEGIN", "starting the copy");
        if (begun) open_ = true;
        return begun;
    }
    Result<void> commit() {
        open_ = false;
        return conn_.exec("COMMIT", "committing the copy");
    }

private:
    pg::Connection& conn_;
    bool open_ = false;
};

Result<std::vector<std::string>> pg_tables(pg::Connection& conn) {
    auto rows = conn.query(
        "SELECT table_name::text FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        pg::Params{}, "listing the PostgreSQL tables");
    if (!rows) return rows.error();
    std::vector<std::string> names;
    for (int i = 0; i < rows->size(); ++i) names.push_back(rows->row(i).column_text(0));
    return names;
}

// The tables among `tables` that hold at least one row (schema_version excepted).
Result<std::vector<std::string>> tables_with_rows(pg::Connection& conn,
                                                  const std::vector<std::string>& tables) {
    std::vector<std::string> full;
    for (const auto& table : tables) {
        if (table == kSchemaVersionTable) continue;
        const std::string sql = "SELECT EXISTS (SELECT 1 FROM " + quote_ident(table) + ")";
        auto rows = conn.query(sql, pg::Params{}, "checking that the target is empty");
        if (!rows) return rows.error();
        if (rows->row(0).column_bool(0)) full.push_back(table);
    }
    return full;
}

Result<void> check_target_empty(pg::Connection& conn, const std::vector<std::string>& tables) {
    auto full = tables_with_rows(conn, tables);
    if (!full) return full.error();
    if (full->empty()) return {};
    return errors::internal(
        fmt::format("the PostgreSQL database is not empty (rows in: {}); the copy goes only into "
                    "an empty database, and nothing was written",
                    join(*full)));
}

Result<std::vector<Column>> pg_columns(pg::Connection& conn, std::string_view table) {
    auto rows = conn.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        pg::Params{}.add_text(table), "listing the columns of a PostgreSQL table");
    if (!rows) return rows.error();
    std::vector<Column> columns;
    for (int i = 0; i < rows->size(); ++i) {
        const std::string name = rows->row(i).column_text(0);
        const std::string type = rows->row(i).column_text(1);
        Kind kind;
        if (type == "bigint") {
            kind = Kind::kInt;
        } else if (type == "boolean") {
            kind = Kind::kBool;
        } else if (type == "text") {
            kind = Kind::kText;
        } else if (type == "bytea") {
            kind = Kind::kBytes;
        } else {
            return errors::internal(fmt::format(
                "column {}.{} has the PostgreSQL type {}, which the copy does not handle (teach "
                "src/myelin/storage/transfer/sqlite_to_postgres.cpp)",
                table, name, type));
        }
        columns.push_back(Column{name, kind});
    }
    return columns;
}

// ---- Checks shared by both sides ----------------------------------------------------------

// Every table in `present` must have a rule; with `require_copied`, every copied table must be
// present as well.
Result<void> check_tables(const std::vector<std::string>& present, std::string_view where,
                          bool require_copied) {
    std::vector<std::string> unknown;
    for (const auto& name : present) {
        if (find_table_rule(name) == nullptr) unknown.push_back(name);
    }
    if (!unknown.empty()) {
        return errors::internal(fmt::format(
            "{} has tables this myelin does not know how to copy: {}; nothing was copied (a "
            "newer myelin may have created them: copy with that version)",
            where, join(unknown)));
    }
    if (!require_copied) return {};
    std::vector<std::string> missing;
    for (const TableRule& rule : table_rules()) {
        if (rule.handling != TableHandling::kCopy) continue;
        if (std::find(present.begin(), present.end(), rule.name) == present.end()) {
            missing.emplace_back(rule.name);
        }
    }
    if (!missing.empty()) {
        return errors::internal(
            fmt::format("{} lacks the tables {}; nothing was copied", where, join(missing)));
    }
    return {};
}

// ---- One table --------------------------------------------------------------------------------

Error value_mismatch(std::string_view table, const Column& column, std::string_view found) {
    return errors::internal(fmt::format(
        "table {}, column {}: a row holds {} where the schema expects {}; nothing was copied",
        table, column.name, found,
        column.kind == Kind::kText    ? "text"
        : column.kind == Kind::kBytes ? "bytes"
                                      : "an integer"));
}

std::string_view storage_class_name(sqlite::ColumnType type) {
    switch (type) {
        case sqlite::ColumnType::kInteger:
            return "an integer";
        case sqlite::ColumnType::kFloat:
            return "a real number";
        case sqlite::ColumnType::kText:
            return "text";
        case sqlite::ColumnType::kBlob:
            return "bytes";
        case sqlite::ColumnType::kNull:
            break;
    }
    return "NULL";
}

// Appends the value of column `i` of the current SQLite row to the COPY buffer and the checksum.
Result<void> encode_value(const sqlite::Statement& stmt, int i, const Column& column,
                          std::string_view table, std::string& out, RowChecksum& sum) {
    const auto type = stmt.column_type(i);
    if (type == sqlite::ColumnType::kNull) {
        put_null(out);
        sum.add_null();
        return {};
    }
    switch (column.kind) {
        case Kind::kInt:
        case Kind::kBool: {
            if (type != sqlite::ColumnType::kInteger) {
                return value_mismatch(table, column, storage_class_name(type));
            }
            const std::int64_t value = stmt.column_int(i);
            if (column.kind == Kind::kInt) {
                put_be(out, 8, 4);
                put_be(out, static_cast<std::uint64_t>(value), 8);
            } else {
                put_be(out, 1, 4);
                out += static_cast<char>(value != 0 ? 1 : 0);
            }
            // The source value as it is: a boolean stored as anything but 0 or 1 would arrive
            // changed, and the verification must notice.
            sum.add_int(value);
            return {};
        }
        case Kind::kText:
            if (type != sqlite::ColumnType::kText) {
                return value_mismatch(table, column, storage_class_name(type));
            }
            put_field(out, stmt.column_view(i));
            sum.add_text(stmt.column_view(i));
            return {};
        case Kind::kBytes:
            if (type != sqlite::ColumnType::kBlob) {
                return value_mismatch(table, column, storage_class_name(type));
            }
            put_field(out, stmt.column_view(i));
            sum.add_bytes(stmt.column_view(i));
            return {};
    }
    return errors::internal("unreachable column kind");
}

// Adds column `i` of a row read back from PostgreSQL (binary format) to the checksum.
void hash_target_value(const pg::Row& row, int i, const Column& column, RowChecksum& sum) {
    if (row.column_is_null(i)) {
        sum.add_null();
        return;
    }
    switch (column.kind) {
        case Kind::kInt:
        case Kind::kBool:
            sum.add_int(row.column_int(i));
            return;
        case Kind::kText:
            sum.add_text(row.column_view(i));
            return;
        case Kind::kBytes:
            sum.add_bytes(row.column_view(i));
            return;
    }
}

// The columns of `table` in the target's order, after checking that SQLite has the same ones.
Result<std::vector<Column>> matched_columns(sqlite::Connection& source, pg::Connection& target,
                                            std::string_view table) {
    auto columns = pg_columns(target, table);
    if (!columns) return columns.error();
    auto source_columns = sqlite_columns(source, table);
    if (!source_columns) return source_columns.error();
    std::set<std::string> target_names;
    for (const auto& c : *columns) target_names.insert(c.name);
    if (target_names != *source_columns) {
        return errors::internal(fmt::format(
            "table {} has the columns ({}) in SQLite but ({}) in PostgreSQL; nothing was copied",
            table, join({source_columns->begin(), source_columns->end()}),
            join({target_names.begin(), target_names.end()})));
    }
    return columns;
}

// Restarts the sequence of every identity (or serial) column of `table` past the highest id
// copied and the highest id SQLite handed out; returns the id handed out next (nullopt when
// the table has no such column). ALTER SEQUENCE is transactional: rolled back with the copy.
Result<std::optional<std::int64_t>> restart_sequences(sqlite::Connection& source,
                                                      pg::Connection& target,
                                                      std::string_view table,
                                                      const std::vector<Column>& columns) {
    std::optional<std::int64_t> next;
    for (const auto& column : columns) {
        auto sequence =
            target.query("SELECT pg_get_serial_sequence($1, $2)",
                         pg::Params{}.add_text(quote_ident(table)).add_text(column.name),
                         "finding a column's sequence");
        if (!sequence) return sequence.error();
        if (sequence->row(0).column_is_null(0)) continue;
        const std::string sequence_name = sequence->row(0).column_text(0);
        const std::string max_sql =
            "SELECT COALESCE(MAX(" + quote_ident(column.name) + "), 0) FROM " + quote_ident(table);
        auto max_id = target.query(max_sql, pg::Params{}, "reading the highest copied id");
        if (!max_id) return max_id.error();
        auto handed_out = sqlite_sequence_of(source, table);
        if (!handed_out) return handed_out.error();
        const std::int64_t following = std::max(max_id->row(0).column_int(0), *handed_out) + 1;
        const std::string restart =
            fmt::format("ALTER SEQUENCE {} RESTART WITH {}", sequence_name, following);
        if (auto done = target.exec(restart.c_str(), "moving a sequence past the copied ids");
            !done) {
            return done.error();
        }
        next = following;
    }
    return next;
}

Result<TableOutcome> copy_table(sqlite::Connection& source, pg::Connection& target,
                                const TableRule& rule, const SqliteToPostgresOptions& options) {
    const std::string table(rule.name);
    TableOutcome outcome;
    outcome.name = table;
    outcome.copied = true;
    auto columns = matched_columns(source, target, table);
    if (!columns) return columns.error();

    std::string list;
    for (const auto& c : *columns) {
        if (!list.empty()) list += ", ";
        list += quote_ident(c.name);
    }
    const std::string select = "SELECT " + list + " FROM " + quote_ident(table);
    const std::string copy =
        "COPY " + quote_ident(table) + " (" + list + ") FROM STDIN WITH (FORMAT binary)";

    // Stream: one SQLite row after the other into the COPY buffer.
    RowChecksum source_sum;
    auto stmt = source.prepare(select);
    if (!stmt) return stmt.error();
    bool started = false;
    const auto field_count = static_cast<std::uint64_t>(columns->size());
    auto produce = [&](std::string& out) -> Result<bool> {
        if (!started) {
            put_copy_header(out);
            started = true;
        }
        while (out.size() < options.buffer_bytes) {
            auto row = (*stmt)->step("reading a SQLite table");
            if (!row) return row.error();
            if (!*row) {
                put_copy_trailer(out);
                return false;
            }
            put_be(out, field_count, 2);
            for (std::size_t i = 0; i < columns->size(); ++i) {
                if (auto encoded = encode_value(**stmt, static_cast<int>(i), (*columns)[i], table,
                                                out, source_sum);
                    !encoded) {
                    return encoded.error();
                }
            }
            source_sum.end_row();
        }
        return true;
    };
    auto copied = target.copy_in(copy.c_str(), produce, "copying table " + table);
    if (!copied) return copied.error();

    // Verify: read every row back and compare count and checksum.
    RowChecksum target_sum;
    auto read_back = target.query_each(
        select, pg::Params{},
        [&](const pg::Row& row) -> Result<void> {
            for (std::size_t i = 0; i < columns->size(); ++i) {
                hash_target_value(row, static_cast<int>(i), (*columns)[i], target_sum);
            }
            target_sum.end_row();
            return {};
        },
        "reading back table " + table);
    if (!read_back) return read_back.error();
    if (*copied != source_sum.rows() || target_sum.rows() != source_sum.rows() ||
        target_sum.value() != source_sum.value()) {
        return errors::internal(fmt::format(
            "table {}: the copy differs from the source (SQLite: {} rows, checksum {:016x}; "
            "PostgreSQL: {} rows, checksum {:016x}); nothing was committed",
            table, source_sum.rows(), source_sum.value(), target_sum.rows(), target_sum.value()));
    }
    outcome.rows = source_sum.rows();
    outcome.checksum = source_sum.value();

    auto next = restart_sequences(source, target, table, *columns);
    if (!next) return next.error();
    outcome.next_id = *next;
    return outcome;
}

}  // namespace

Result<TransferReport> copy_sqlite_to_postgres(const SqliteToPostgresOptions& options) {
    const std::string& path = options.sqlite_path;
    if (options.buffer_bytes == 0) return errors::internal("buffer_bytes must be positive");

    // 1. The source, on one snapshot for the whole copy.
    auto source = open_source(path);
    if (!source) return source.error();
    SqliteSnapshot snapshot(**source);
    if (auto begun = snapshot.begin(); !begun) return begun.error();
    if (auto checked = check_source_version(**source, path); !checked) return checked.error();
    auto source_tables = sqlite_tables(**source);
    if (!source_tables) return source_tables.error();
    if (auto known =
            check_tables(*source_tables, fmt::format("the SQLite database '{}'", path), true);
        !known) {
        return known.error();
    }

    // 2. The target: empty, then at this build's schema.
    auto target = pg::Connection::open(options.target);
    if (!target) return target.error();
    pg::Connection& pg = **target;
    auto existing = pg_tables(pg);
    if (!existing) return existing.error();
    if (auto known = check_tables(*existing, "the PostgreSQL database", false); !known) {
        return known.error();
    }
    if (auto empty = check_target_empty(pg, *existing); !empty) return empty.error();
    auto version = pg::apply_migrations(pg);
    if (!version) return version.error();
    auto target_tables = pg_tables(pg);
    if (!target_tables) return target_tables.error();
    if (auto known = check_tables(*target_tables, "the PostgreSQL database", true); !known) {
        return known.error();
    }

    // 3.-5. One transaction: nobody else writes until it commits, and nothing stays if it fails.
    PgTransaction txn(pg);
    if (auto begun = txn.begin(); !begun) return begun.error();
    std::string lock = "LOCK TABLE ";
    for (std::size_t i = 0; i < target_tables->size(); ++i) {
        if (i > 0) lock += ", ";
        lock += quote_ident((*target_tables)[i]);
    }
    lock += " IN EXCLUSIVE MODE";
    if (auto locked = pg.exec(lock.c_str(), "locking the target's tables"); !locked) {
        return locked.error();
    }
    if (auto empty = check_target_empty(pg, *target_tables); !empty) return empty.error();

    TransferReport report;
    report.schema_version = *version;
    for (const TableRule& rule : table_rules()) {
        // check_tables made sure that every copied table is on both sides.
        if (rule.handling == TableHandling::kSkip) {
            TableOutcome skipped;
            skipped.name = std::string(rule.name);
            skipped.skip_reason = std::string(rule.reason);
            report.tables.push_back(std::move(skipped));
            continue;
        }
        if (options.progress) options.progress(fmt::format("copying {}", rule.name));
        auto outcome = copy_table(**source, pg, rule, options);
        if (!outcome) return outcome.error();
        report.tables.push_back(std::move(*outcome));
    }
    if (auto committed = txn.commit(); !committed) return committed.error();
    return report;
}

}  // namespace myelin::storage::transfer
