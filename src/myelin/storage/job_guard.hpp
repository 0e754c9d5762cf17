#pragma once

// Running storage jobs on a backend's thread without letting an exception (a bug in a job or in
// its callback) escape into the thread: each function catches it, logs it under the backend's
// name ("sqlite", "postgresql") and carries on. Shared by every backend.
//
// Thread-safety: plain functions; they run on the caller's (the backend's) thread.

#include <string_view>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::storage {

// Runs the body of a write job on `txn`: its result, or 500 when it threw. An empty body succeeds.
[[nodiscard]] Result<void> run_write_body(WriteJob& job, WriteTxn& txn, std::string_view backend);

// Hands a write job its result (on_committed, if set).
void deliver_write_result(WriteJob& job, const Result<void>& result, std::string_view backend);

// Runs a read job with `txn` (null: the database cannot serve it). An empty job does nothing.
void run_read_job(ReadJob& job, ReadTxn* txn, std::string_view backend);

}  // namespace myelin::storage
