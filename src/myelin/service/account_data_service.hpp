#pragma once

// Account data (account-data.yaml): JSON objects a user stores per type, globally or per room.
// Every write takes the next position of the user's account-data stream, which a /sync reads
// (ReadTxn::account_data_since). Thread-safety: all methods may be called concurrently;
// storage work runs on the database's threads.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class AccountDataService {
public:
    // `db` must outlive the service.
    explicit AccountDataService(storage::Database& db) : db_(db) {}

    // The stored content (serialized JSON object) of the entry; `room_id` empty for global
    // data. Errors: 404 M_NOT_FOUND when absent, 503.
    boost::asio::awaitable<Result<std::string>> get(std::string user_id, std::string room_id,
                                                    std::string type);

    // Stores the entry (content: a serialized JSON object the caller checked) and returns its
    // stream position. Errors: 503.
    boost::asio::awaitable<Result<std::int64_t>> put(std::string user_id, std::string room_id,
                                                     std::string type, std::string content);

    // What update() makes of an entry's content (nullopt: absent): the new content (a
    // serialized JSON object), nullopt to write nothing, or an error to abort. Must be pure: it
    // runs on the writer thread and may run again when a PostgreSQL job is retried.
    using Change =
        std::function<Result<std::optional<std::string>>(const std::optional<std::string>&)>;

    // Read-modify-write of one entry in a single write job, so that concurrent updates of the
    // same entry (e.g. two room tags) are applied one after the other and none is lost. Errors:
    // those of `change`, 503.
    boost::asio::awaitable<Result<void>> update(std::string user_id, std::string room_id,
                                                std::string type, Change change);

    // Wakes the user's long-polls (/sync) after each committed put(). nullptr (the default):
    // nobody is woken. Set before serving; `notifier` must outlive the service.
    void set_notifier(UserNotifier* notifier) { notifier_ = notifier; }

private:
    storage::Database& db_;
    UserNotifier* notifier_ = nullptr;
};

}  // namespace myelin::service
