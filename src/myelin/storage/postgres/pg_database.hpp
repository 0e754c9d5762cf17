#pragma once

// The PostgreSQL storage backend: a Database over a bounded pool of libpq connections, each owned
// by its own worker thread. Read and write jobs share one FIFO queue; a job waits at most
// `pool_timeout` for a free connection, then fails with 503. A write job runs in its own
// SERIALIZABLE transaction, so jobs of any number of connections and processes on one database
// behave as if run one after another (as SQLite's single writer does); a job that loses a
// serialization race is rolled back and run again. A read job runs in a REPEATABLE READ READ ONLY
// transaction (one snapshot). PostgreSQL itself groups the commits of concurrent connections.
// A lost connection fails the job that was using it (503) and is reopened for the next job.
//
// Thread-safety: the returned Database is safe to use from any thread (see database.hpp).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::storage {

namespace pg {
struct ConnectionSettings;  // pg_connection.hpp
}  // namespace pg

struct PostgresOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 5432;
    std::string user;
    std::string password;  // empty: none (trust or peer authentication); never logged
    std::string dbname;
    // Shown in pg_stat_activity; lets operators (and tests) tell our connections apart.
    std::string application_name = "myelin";
    // The sessions' synchronous_commit: on, a job's result is delivered only once its commit is
    // flushed to disk; off, a crash of the database server may lose the last commits.
    bool synchronous_commit = true;
    // Connections, each with its own worker thread. At least 1.
    int pool_size = 8;
    // Longest a job waits in the queue for a free connection; then it fails with 503. > 0.
    std::chrono::milliseconds pool_timeout{10'000};
    // How often a write job is run when it keeps losing serialization races. At least 1. With
    // the randomised back-off (up to 50 ms) 30 attempts wait about 0.7 s on average before a
    // 503: on small tables PostgreSQL's predicate locks cover whole relations, so unrelated
    // rotations conflict often (bench/README.md counts them), and 10 was seen to run out under
    // four concurrent clients right after a database restart.
    int max_attempts = 30;
    // Seconds to wait for a connection to be established.
    int connect_timeout_s = 5;
};

// Connects, applies the numbered migrations, opens `pool_size` connections and starts their
// threads. Blocks while doing so. Errors (Result, errcode M_UNKNOWN): 503 when the server cannot
// be reached or refuses the login (the message names user, host, port and database, never the
// password); 500 when a migration fails, the options are invalid, or the schema is newer than this
// build ("database schema version 7 is newer than this myelin build supports (3); upgrade
// myelin"). The caller owns the Database; destroying it closes it.
[[nodiscard]] Result<std::unique_ptr<Database>> open_postgres(const PostgresOptions& options);

// The settings of one connection to the database `options` name, as the pool's connections
// are opened (user, password, application_name, synchronous_commit, connect timeout); for
// connections of their own, e.g. a test's. Include pg_connection.hpp to use the result.
pg::ConnectionSettings connection_settings(const PostgresOptions& options);

// The schema version this build writes (the newest migration's number).
int postgres_schema_version();

}  // namespace myelin::storage
