#include "myelin/service/to_device_service.hpp"

#include <functional>
#include <memory>
#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

// Whether the user ID names a user of this server.
bool is_local(std::string_view user_id, std::string_view server_name) {
    auto colon = user_id.find(':');
    return colon != std::string_view::npos && user_id.substr(colon + 1) == server_name;
}

}  // namespace

boost::asio::awaitable<Result<std::int64_t>> ToDeviceService::send(
    std::string sender_user, std::string sender_device, std::string txn_id, std::string type,
    std::vector<ToDeviceMessage> messages) {
    auto wake = std::make_shared<std::vector<std::string>>();
    auto job = [sender_user = std::move(sender_user), sender_device = std::move(sender_device),
                txn_id = std::move(txn_id), type = std::move(type), messages = std::move(messages),
                now = clock_.now_ms(), server = server_name_,
                wake](storage::WriteTxn& txn) -> Result<std::int64_t> {
        wake->clear();  // a PostgreSQL job may run again after a conflict
        auto fresh = txn.insert_to_device_txn(sender_user, sender_device, txn_id, now);
        if (!fresh) return fresh.error();
        if (!*fresh) return std::int64_t{0};
        std::int64_t queued = 0;
        for (const auto& m : messages) {
            if (!is_local(m.user_id, server)) continue;
            std::vector<std::string> devices;
            if (m.device_id == "*") {
                auto all = txn.list_devices(m.user_id);
                if (!all) return all.error();
                for (auto& d : *all) devices.push_back(std::move(d.device_id));
            } else {
                auto device = txn.find_device(m.user_id, m.device_id);
                if (!device) return device.error();
                if (*device) devices.push_back(m.device_id);
            }
            for (const auto& device : devices) {
                storage::ToDeviceRecord record;
                record.recipient_user = m.user_id;
                record.recipient_device = device;
                record.sender = sender_user;
                record.type = type;
                record.content = m.content;
                if (auto r = txn.insert_to_device(record); !r) return r.error();
                ++queued;
            }
            if (!devices.empty()) wake->push_back(m.user_id);
        }
        return queued;
    };
    std::function<void()> after_commit;
    if (notifier_ != nullptr) {
        after_commit = [notifier = notifier_, wake] {
            if (!wake->empty()) notifier->notify(*wake);
        };
    }
    return storage::write<std::int64_t>(db_, std::move(job), std::move(after_commit));
}

}  // namespace myelin::service
