#pragma once

// The SQLite schema as numbered migrations compiled into the binary, and the code that brings a
// database file up to date when it is opened. The applied versions are recorded in the
// `schema_version` table (one row per migration).
//
// Thread-safety: apply_migrations uses only the connection it is given (one thread at a time).

#include <span>

#include "myelin/core/error.hpp"
#include "myelin/storage/migration.hpp"
#include "myelin/storage/sqlite/connection.hpp"

namespace myelin::storage::sqlite {

using storage::Migration;

// Every migration this build knows, in order.
std::span<const Migration> migrations();

// The newest schema version this build writes (the last migration's version).
int latest_schema_version();

// Brings the database on `conn` up to latest_schema_version(), each migration in its own
// IMMEDIATE transaction, and returns the resulting version. Errors (500 M_UNKNOWN): the
// database's version is newer than this build supports ("database schema version 7 is newer
// than this myelin build supports (1); upgrade myelin"), or a migration failed (rolled back,
// named in the message); storage failures as mapped by sqlite_error.
[[nodiscard]] Result<int> apply_migrations(Connection& conn);

}  // namespace myelin::storage::sqlite
