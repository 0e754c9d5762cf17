#include "myelin/service/device_service.hpp"

#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

Error no_such_device() { return errors::not_found("Device not found"); }

}  // namespace

DeviceService::DeviceService(storage::Database& db, SessionService& sessions)
    : db_(db), sessions_(sessions) {}

// These are plain functions returning the storage awaitable (not coroutines): nothing happens
// after the job, and g++ 12 is happier without coroutine frames holding non-trivial arguments.

boost::asio::awaitable<Result<std::vector<storage::DeviceRecord>>> DeviceService::list(
    std::string user_id) {
    auto job = [user_id = std::move(user_id)](storage::ReadTxn& txn) {
        return txn.list_devices(user_id);
    };
    return storage::read<std::vector<storage::DeviceRecord>>(db_, std::move(job));
}

boost::asio::awaitable<Result<storage::DeviceRecord>> DeviceService::get(std::string user_id,
                                                                         std::string device_id) {
    auto job = [user_id = std::move(user_id), device_id = std::move(device_id)](
                   storage::ReadTxn& txn) -> Result<storage::DeviceRecord> {
        auto found = txn.find_device(user_id, device_id);
        if (!found) return found.error();
        if (!*found) return no_such_device();
        return std::move(**found);
    };
    return storage::read<storage::DeviceRecord>(db_, std::move(job));
}

boost::asio::awaitable<Result<bool>> DeviceService::rename(
    std::string user_id, std::string device_id, std::optional<std::string> display_name) {
    if (!display_name) {
        // Nothing to change; only the 404 contract remains.
        auto job = [user_id = std::move(user_id),
                    device_id = std::move(device_id)](storage::ReadTxn& txn) -> Result<bool> {
            auto found = txn.find_device(user_id, device_id);
            if (!found) return found.error();
            if (!*found) return no_such_device();
            return false;
        };
        return storage::read<bool>(db_, std::move(job));
    }
    auto job = [user_id = std::move(user_id), device_id = std::move(device_id),
                name = std::move(*display_name)](storage::WriteTxn& txn) -> Result<bool> {
        auto changed = txn.set_device_display_name(user_id, device_id, std::string_view(name));
        if (!changed) return changed.error();
        if (!*changed) return no_such_device();  // nothing was written: the rollback is empty
        return true;
    };
    return storage::write<bool>(db_, std::move(job));
}

boost::asio::awaitable<Result<std::size_t>> DeviceService::remove(
    std::string user_id, std::vector<std::string> device_ids) {
    return sessions_.end_device_sessions(std::move(user_id), std::move(device_ids));
}

}  // namespace myelin::service
