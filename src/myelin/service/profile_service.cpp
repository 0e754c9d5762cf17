#include "myelin/service/profile_service.hpp"

#include <utility>

#include "myelin/storage/await.hpp"

namespace myelin::service {

boost::asio::awaitable<Result<storage::ProfileRecord>> ProfileService::get(std::string user_id) {
    auto job = [user_id =
                    std::move(user_id)](storage::ReadTxn& txn) -> Result<storage::ProfileRecord> {
        auto user = txn.find_user(user_id);
        if (!user) return user.error();
        if (!*user) return errors::not_found("Profile not found");
        auto profile = txn.find_profile(user_id);
        if (!profile) return profile.error();
        if (!*profile) return storage::ProfileRecord{user_id, std::nullopt, std::nullopt};
        return std::move(**profile);
    };
    return storage::read<storage::ProfileRecord>(db_, std::move(job));
}

boost::asio::awaitable<Result<void>> ProfileService::set(std::string user_id, ProfileField field,
                                                         std::optional<std::string> value) {
    auto job = [user_id = std::move(user_id), field,
                value = std::move(value)](storage::WriteTxn& txn) -> Result<void> {
        auto found = txn.find_profile(user_id);
        if (!found) return found.error();
        storage::ProfileRecord profile{user_id, std::nullopt, std::nullopt};
        if (*found) profile = std::move(**found);
        if (field == ProfileField::kDisplayName) {
            profile.displayname = value;
        } else {
            profile.avatar_url = value;
        }
        return txn.upsert_profile(profile);
    };
    return storage::write<void>(db_, std::move(job));
}

}  // namespace myelin::service
