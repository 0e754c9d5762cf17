#pragma once

// A SQLite VFS for tests that wraps the default one and, while armed, makes every write to a WAL
// file fail with SQLITE_FULL ("disk full"): the way to make a COMMIT fail on demand.
//
// Thread-safety: register_faulty_vfs() is idempotent and thread-safe; the fault switch is atomic.

namespace myelin::storage::testing {

// The VFS name to put into SqliteOptions::vfs. Registers the VFS on first call.
const char* faulty_vfs_name();

// While true, writes to WAL files opened through the faulty VFS fail with SQLITE_FULL.
void set_wal_writes_fail(bool fail);

}  // namespace myelin::storage::testing
