#pragma once

// The PostgreSQL schema as numbered migrations compiled into the binary, and the code that brings
// a database up to date when the backend opens it. The applied versions are recorded in the
// `schema_version` table (one row per migration). The numbers describe the same schema as the
// SQLite backend's migrations of the same number.
//
// Thread-safety: apply_migrations uses only the connection it is given. Several processes may
// open the same database at once: each migration runs under a transaction-level advisory lock.

#include <span>

#include "myelin/core/error.hpp"
#include "myelin/storage/migration.hpp"
#include "myelin/storage/postgres/pg_connection.hpp"

namespace myelin::storage::pg {

// Every migration this build knows, in order.
std::span<const Migration> migrations();

// The newest schema version this build writes (the last migration's version).
int latest_schema_version();

// Brings the database on `conn` up to latest_schema_version(), each migration in its own
// transaction, and returns the resulting version. Errors (500 M_UNKNOWN): the database's version
// is newer than this build supports (see schema_too_new), or a migration failed (rolled back,
// named in the message); connection failures as mapped by pg_error (503).
[[nodiscard]] Result<int> apply_migrations(Connection& conn);

}  // namespace myelin::storage::pg
