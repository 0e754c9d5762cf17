#include "myelin/service/admin_service.hpp"

#include <algorithm>
#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

Error no_such_user() { return errors::not_found("No such user"); }
Error no_such_device() { return errors::not_found("No such device"); }

}  // namespace

boost::asio::awaitable<Result<storage::UserRecord>> AdminService::user(std::string user_id) {
    auto job = [user_id =
                    std::move(user_id)](storage::ReadTxn& txn) -> Result<storage::UserRecord> {
        auto found = txn.find_user(user_id);
        if (!found) return found.error();
        if (!*found) return no_such_user();
        return std::move(**found);
    };
    auto op = storage::read<storage::UserRecord>(db_, std::move(job));
    auto r = co_await std::move(op);
    co_return r;
}

boost::asio::awaitable<Result<std::vector<storage::DeviceRecord>>> AdminService::devices(
    std::string user_id) {
    using Devices = std::vector<storage::DeviceRecord>;
    auto job = [user_id = std::move(user_id)](storage::ReadTxn& txn) -> Result<Devices> {
        auto found = txn.find_user(user_id);
        if (!found) return found.error();
        if (!*found) return no_such_user();
        return txn.list_devices(user_id);
    };
    auto op = storage::read<Devices>(db_, std::move(job));
    auto r = co_await std::move(op);
    co_return r;
}

boost::asio::awaitable<Result<std::vector<storage::SecurityEventRecord>>>
AdminService::security_events(std::string user_id, int limit) {
    using Events = std::vector<storage::SecurityEventRecord>;
    limit = std::clamp(limit, 1, kMaxEvents);
    auto job = [user_id = std::move(user_id), limit](storage::ReadTxn& txn) -> Result<Events> {
        auto found = txn.find_user(user_id);
        if (!found) return found.error();
        if (!*found) return no_such_user();
        return txn.security_events(user_id, limit);
    };
    auto op = storage::read<Events>(db_, std::move(job));
    auto r = co_await std::move(op);
    co_return r;
}

boost::asio::awaitable<Result<std::size_t>> AdminService::revoke(
    std::string user_id, std::optional<std::string> device_id) {
    auto check_job = [user_id, device_id](storage::ReadTxn& txn) -> Result<bool> {
        auto found = txn.find_user(user_id);
        if (!found) return found.error();
        if (!*found) return no_such_user();
        if (device_id) {
            auto device = txn.find_device(user_id, *device_id);
            if (!device) return device.error();
            if (!*device) return no_such_device();
        }
        return true;
    };
    auto check_op = storage::read<bool>(db_, std::move(check_job));
    auto checked = co_await std::move(check_op);
    if (!checked) co_return checked.error();
    auto end_op = sessions_.end_sessions(std::move(user_id), std::move(device_id), std::nullopt,
                                         storage::RevokeReason::kAdmin, false);
    auto ended = co_await std::move(end_op);
    co_return ended;
}

}  // namespace myelin::service
