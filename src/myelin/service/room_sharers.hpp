#pragma once

// Who sees a user's device-list changes in /sync (device_lists.changed): the user and everyone
// sharing a joined room with them. Used by the write jobs that change keys, to wake those users'
// long-polls after the commit. Pure storage reads; runs on a storage thread.

#include <string>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// Adds `user_id` and every joined member of the rooms `user_id` has joined to `out` (kept
// sorted, without duplicates). Errors: 503 (storage).
Result<void> add_room_sharers(storage::ReadTxn& txn, const std::string& user_id,
                              std::vector<std::string>& out);

}  // namespace myelin::service
