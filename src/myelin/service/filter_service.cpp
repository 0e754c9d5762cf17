#include "myelin/service/filter_service.hpp"

#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {

boost::asio::awaitable<Result<std::int64_t>> FilterService::create(std::string user_id,
                                                                   std::string filter_json) {
    auto job = [user_id = std::move(user_id), filter_json = std::move(filter_json)](
                   storage::WriteTxn& txn) { return txn.insert_filter(user_id, filter_json); };
    return storage::write<std::int64_t>(db_, std::move(job));
}

boost::asio::awaitable<Result<std::string>> FilterService::get(std::string user_id,
                                                               std::int64_t filter_id) {
    auto job = [user_id = std::move(user_id),
                filter_id](storage::ReadTxn& txn) -> Result<std::string> {
        auto found = txn.find_filter(user_id, filter_id);
        if (!found) return found.error();
        if (!*found) return errors::not_found("Filter not found");
        return std::move(**found);
    };
    return storage::read<std::string>(db_, std::move(job));
}

}  // namespace myelin::service
