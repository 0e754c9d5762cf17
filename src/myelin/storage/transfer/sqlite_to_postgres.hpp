#pragma once

// Copies a myelin SQLite database into an empty PostgreSQL database (`myelin admin
// migrate-sqlite-to-postgres`). In order, before anything is written:
//   1. the SQLite file is opened read-only; it must exist, be at this build's schema version and
//      hold only tables that table_rules() knows;
//   2. every table of the target must be empty (a target with rows is refused), then the
//      target's migrations are applied (this build's schema, or nothing when already there) and
//      its tables, too, must be exactly the known ones;
// then, in ONE PostgreSQL transaction (all or nothing; the target's tables are locked against
// other writers for its duration), on one SQLite snapshot:
//   3. the emptiness is checked again, and every copied table is streamed with binary COPY in
//      buffers of `buffer_bytes` (ids, token hashes and sealed successors byte for byte; memory
//      stays bounded whatever the table's size);
//   4. every copied table is read back and its row count and RowChecksum compared with the
//      source's; any difference aborts the transaction;
//   5. each identity sequence is restarted past both the highest copied id and the highest id
//      SQLite ever handed out (sqlite_sequence), so ids are never reused.
// The server secret (key file) is not in the database; the caller reminds the operator.
//
// Thread-safety: a plain blocking function; it opens its own connections.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/postgres/pg_connection.hpp"

namespace myelin::storage::transfer {

struct SqliteToPostgresOptions {
    std::string sqlite_path;
    pg::ConnectionSettings target;
    // COPY data is sent in buffers of about this size.
    std::size_t buffer_bytes = 1 << 20;
    // Told one line of progress ("copying sessions") before each table; may be empty.
    std::function<void(std::string_view)> progress;
};

// What happened to one table.
struct TableOutcome {
    std::string name;
    bool copied = false;
    std::string skip_reason;     // for a skipped table
    std::int64_t rows = 0;       // copied and verified
    std::uint64_t checksum = 0;  // RowChecksum of the rows, equal on both sides
    // For a table with an identity column: the id PostgreSQL hands out next.
    std::optional<std::int64_t> next_id;
};

struct TransferReport {
    int schema_version = 0;
    std::vector<TableOutcome> tables;  // in table_rules() order
};

// Runs the copy described above. Errors (M_UNKNOWN; the target unchanged in every case except
// that an empty target may have received the schema): the SQLite file is missing, not a myelin
// database, at an older schema version (the message tells the operator to run the server on it
// once to upgrade it) or a newer one, or holds an unknown table; the target holds rows (the
// message names the tables), has an unknown table or a newer schema; a value cannot be copied;
// a count or checksum differs after the copy; storage errors of either side as sqlite_error and
// pg_error map them (503 when a database cannot be reached). Messages never hold the password.
[[nodiscard]] Result<TransferReport> copy_sqlite_to_postgres(
    const SqliteToPostgresOptions& options);

}  // namespace myelin::storage::transfer
