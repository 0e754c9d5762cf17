#pragma once

// `myelin admin migrate-sqlite-to-postgres --from FILE --to URL [--password-file FILE] [--json]`:
// copies a stopped server's SQLite database into an empty PostgreSQL database (see
// storage/transfer/sqlite_to_postgres.hpp for what is checked, copied and verified), prints a
// per-table summary (rows and checksum) and reminds the operator that the key file must move
// too. The PostgreSQL password comes from the URL or from --password-file, never both; it never
// appears in the output. Progress goes to stderr. Exit statuses: 0 copied and verified; 1
// refused or failed (nothing committed to the target); 2 usage (bad URL, unreadable password
// file). Used from the main thread only.

#include <string>

namespace myelin::app {

struct MigrateArgs {
    std::string from;           // the SQLite file ("sqlite:" prefix allowed)
    std::string to;             // postgresql:// or postgres:// URL
    std::string password_file;  // empty: none
    bool json = false;
};

// Runs the command; returns the exit status.
int run_migrate(const MigrateArgs& args);

}  // namespace myelin::app
