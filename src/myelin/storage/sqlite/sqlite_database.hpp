#pragma once

// The SQLite storage backend: a Database over one database file in WAL mode. One writer thread
// owns the only read-write connection and commits queued write jobs in groups (one durable
// commit for up to `max_batch` jobs, each job isolated in its own savepoint); `reader_threads`
// threads each own a read-only connection and run read jobs in snapshot transactions.
//
// Thread-safety: the returned Database is safe to use from any thread (see database.hpp).
// open_sqlite and sqlite_schema_version may be called from any thread.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::storage {

struct SqliteOptions {
    // Read-only connections, each with its own thread. At least 1.
    int reader_threads = 2;
    // Most write jobs sharing one commit. At least 1.
    int max_batch = 64;
    // synchronous=FULL when true (a delivered commit survives power loss), NORMAL when false
    // (survives a crash of the process, may lose the last commits on OS crash or power loss).
    bool durable = true;
    // How long a connection waits for a lock held by another process before giving up. A write
    // job blocked by such a lock gets its 503 after at most about this long: the jobs that queue
    // while the writer waits share the answer of that wait.
    std::chrono::milliseconds busy_timeout{5000};
    // SQLite VFS to open the files with; empty: SQLite's default. Tests use it to inject I/O
    // faults.
    std::string vfs;
    // Called on the writer thread after each successful commit with the number of jobs it
    // carried, for metrics and tests. Must be quick and must not throw. May be empty.
    std::function<void(std::size_t jobs)> on_commit;
};

// Opens (creating if missing; the parent folder must exist) the database at `path`, applies the
// numbered migrations, then starts the writer thread and the readers. Blocks while doing so.
// Errors (Result, errcode M_UNKNOWN): 503 when the file cannot be opened, cannot be written
// (read-only file or file system, no permission: SQLite would open it read-only; full disk) or is
// locked; 500 when
// it is not a usable database, a migration fails, the options are invalid, or its schema is newer
// than this build ("database schema version 7 is newer than this myelin build supports (1);
// upgrade myelin"). The caller owns the Database; destroying it closes it.
[[nodiscard]] Result<std::unique_ptr<Database>> open_sqlite(const std::string& path,
                                                            const SqliteOptions& options = {});

// The schema version this build writes (the newest migration's number).
int sqlite_schema_version();

}  // namespace myelin::storage
