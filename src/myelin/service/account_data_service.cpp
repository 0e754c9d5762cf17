#include "myelin/service/account_data_service.hpp"

#include <functional>
#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {

boost::asio::awaitable<Result<std::string>> AccountDataService::get(std::string user_id,
                                                                    std::string room_id,
                                                                    std::string type) {
    auto job = [user_id = std::move(user_id), room_id = std::move(room_id),
                type = std::move(type)](storage::ReadTxn& txn) -> Result<std::string> {
        auto found = txn.find_account_data(user_id, room_id, type);
        if (!found) return found.error();
        if (!*found) return errors::not_found("Account data not found");
        return std::move((*found)->content);
    };
    return storage::read<std::string>(db_, std::move(job));
}

boost::asio::awaitable<Result<std::int64_t>> AccountDataService::put(std::string user_id,
                                                                     std::string room_id,
                                                                     std::string type,
                                                                     std::string content) {
    std::function<void()> wake;
    if (notifier_ != nullptr) wake = [notifier = notifier_, user_id] { notifier->notify(user_id); };
    auto job = [user_id = std::move(user_id), room_id = std::move(room_id), type = std::move(type),
                content = std::move(content)](storage::WriteTxn& txn) {
        return txn.put_account_data(user_id, room_id, type, content);
    };
    return storage::write<std::int64_t>(db_, std::move(job), std::move(wake));
}

boost::asio::awaitable<Result<void>> AccountDataService::update(std::string user_id,
                                                                std::string room_id,
                                                                std::string type, Change change) {
    std::function<void()> wake;
    if (notifier_ != nullptr) wake = [notifier = notifier_, user_id] { notifier->notify(user_id); };
    auto job = [user_id = std::move(user_id), room_id = std::move(room_id), type = std::move(type),
                change = std::move(change)](storage::WriteTxn& txn) -> Result<void> {
        auto found = txn.find_account_data(user_id, room_id, type);
        if (!found) return found.error();
        std::optional<std::string> current;
        if (*found) current = std::move((*found)->content);
        auto next = change(current);
        if (!next) return next.error();
        if (!*next) return {};
        auto pos = txn.put_account_data(user_id, room_id, type, **next);
        if (!pos) return pos.error();
        return {};
    };
    return storage::write<void>(db_, std::move(job), std::move(wake));
}

}  // namespace myelin::service
