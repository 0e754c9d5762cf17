#pragma once

// A user's devices (device_management.yaml): list, read, rename and delete. Deleting goes
// through SessionService::end_device_sessions, so a deleted device's tokens die everywhere
// before the call returns, in one write job however many devices are named. UIA is the
// handlers' business (the UiaEngine); last-seen times are written by the ActivityTracker.
// Thread-safety: all methods may be called concurrently; they run storage work on the
// database's threads and never block the caller.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/storage/database.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::service {

class DeviceService {
public:
    // `db` and `sessions` must outlive the service.
    DeviceService(storage::Database& db, SessionService& sessions);

    // Every device of the user, ordered by device_id. Errors: 503.
    boost::asio::awaitable<Result<std::vector<storage::DeviceRecord>>> list(std::string user_id);

    // The user's device. Errors: 404 M_NOT_FOUND when the user has no such device, 503.
    boost::asio::awaitable<Result<storage::DeviceRecord>> get(std::string user_id,
                                                              std::string device_id);

    // Sets the display name of an existing device (nullopt: leaves it as it is, but still
    // answers 404 for an unknown device). Never creates a device. Errors: 404 M_NOT_FOUND, 503.
    boost::asio::awaitable<Result<bool>> rename(std::string user_id, std::string device_id,
                                                std::optional<std::string> display_name);

    // Deletes the devices (their sessions end and their tokens die); ids that name no device
    // are ignored. Returns how many devices existed and were deleted. Errors: 503.
    boost::asio::awaitable<Result<std::size_t>> remove(std::string user_id,
                                                       std::vector<std::string> device_ids);

private:
    storage::Database& db_;
    SessionService& sessions_;
};

}  // namespace myelin::service
