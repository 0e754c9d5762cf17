#pragma once

// Opening the storage backend that the config's `[database] url` names: SQLite for "sqlite:PATH"
// (creating its folder, mode 0700, when missing), PostgreSQL for "postgresql://...". Used by the
// server and by the admin CLI, so that both always open the same database the same way.
//
// Thread-safety: a plain function; it blocks while it connects and migrates.

#include <memory>

#include "myelin/core/config.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::app {

// Who opens the database: the server uses the configured threads and connections; a one-shot
// command line tool needs only one or two.
enum class DatabaseUser { kServer, kCommandLine };

// Opens the configured backend. Errors as open_sqlite / open_postgres return them (503 when it
// cannot be reached or opened, 500 when unusable or too new), plus 500 when the SQLite folder
// cannot be created. Messages never contain the database password.
[[nodiscard]] Result<std::unique_ptr<storage::Database>> open_database(const DatabaseConfig& config,
                                                                       DatabaseUser user);

}  // namespace myelin::app
