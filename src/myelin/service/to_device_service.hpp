#pragma once

// To-device messages (to_device.yaml): PUT /sendToDevice queues one message per recipient
// device (the "*" device: every device the user has now) on the recipient user's to-device
// stream; a later /sync delivers them (ReadTxn::to_device_since) and deletes what was
// delivered (WriteTxn::delete_to_device_through). A transaction ID is used once per sending
// device: a retried request queues nothing again. Recipients on other servers are dropped (no
// federation yet). Thread-safety: all methods may be called concurrently; storage work runs on
// the database's threads.

#include <cstdint>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// One message of a sendToDevice request.
struct ToDeviceMessage {
    std::string user_id;
    std::string device_id;  // or "*"
    std::string content;    // serialized JSON object
};

class ToDeviceService {
public:
    // `db`, `clock` and `server_name` must outlive the service.
    ToDeviceService(storage::Database& db, const Clock& clock, const std::string& server_name)
        : db_(db), clock_(clock), server_name_(server_name) {}

    // Queues the messages of one request in one write job, unless the sending device used
    // `txn_id` before. Returns how many messages were queued. Errors: 503.
    boost::asio::awaitable<Result<std::int64_t>> send(std::string sender_user,
                                                      std::string sender_device, std::string txn_id,
                                                      std::string type,
                                                      std::vector<ToDeviceMessage> messages);

    // Wakes the recipients' long-polls (/sync) after each committed send(). nullptr (the
    // default): nobody is woken. Set before serving; `notifier` must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    storage::Database& db_;
    UserNotifier* notifier_ = nullptr;
    const Clock& clock_;
    const std::string& server_name_;
};

}  // namespace myelin::service
