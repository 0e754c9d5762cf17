#pragma once

// `myelin admin ...`: operator commands run against the configured database directly, without
// the HTTP server, and safe while the server runs (SQLite in WAL mode with a busy timeout; a
// revocation made here reaches the running server through the revocation log within a second):
//
//   create-user LOCALPART [--password P | --password-stdin] [--admin]
//   reset-password USER (--password P | --password-stdin)
//   deactivate USER
//   list-devices USER
//   revoke USER [DEVICE]
//   registration-token create [--token T] [--uses N] [--expires 7d]
//   registration-token list
//   registration-token delete TOKEN
//   security-events USER [--limit N]
//   migrate-sqlite-to-postgres --from FILE --to URL [--password-file FILE]
//                                        (no config; see app/migrate_command.hpp)
//
// Each takes --config FILE (or MYELIN_CONFIG) and --json (one JSON object on stdout instead of
// human-readable lines). USER is a localpart or a full user ID of this server. Exit statuses:
// 0 success, 1 the operation failed (no such user, storage error ...), 2 usage or bad config.
// Passwords never appear in the output or the logs. Used from the main thread only.

#include <memory>

#include <CLI/CLI.hpp>

namespace myelin::app {

// What the admin subcommands parsed; filled by CLI11.
struct AdminArgs;

// Adds the `admin` subcommand tree to `cli`. The returned object owns the parsed values and
// must outlive the parse; run it with run_admin() when `admin` was chosen.
class AdminCli {
public:
    explicit AdminCli(CLI::App& cli);
    ~AdminCli();
    AdminCli(const AdminCli&) = delete;
    AdminCli& operator=(const AdminCli&) = delete;

    // True when the command line chose `admin`.
    bool chosen() const;

    // Runs the chosen admin command; returns the process exit status.
    int run();

private:
    std::unique_ptr<AdminArgs> args_;
    CLI::App* admin_;
};

}  // namespace myelin::app
