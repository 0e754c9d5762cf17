#include "myelin/auth/user_interner.hpp"

#include <functional>

namespace myelin::auth::detail {

UserInterner::~UserInterner() {
    for (auto& shard : shards_) {
        for (auto& [key, user] : shard.users) delete user;
    }
}

UserInterner::Shard& UserInterner::shard_for(std::string_view user_id) {
    return shards_[std::hash<std::string_view>{}(user_id) % kShards];
}

InternedUser* UserInterner::acquire(std::string_view user_id) {
    auto& shard = shard_for(user_id);
    std::lock_guard lock(shard.mu);
    auto it = shard.users.find(user_id);
    if (it != shard.users.end()) {
        ++it->second->holders;
        return it->second;
    }
    auto* user = new InternedUser{std::string(user_id), 1};
    try {
        shard.users.emplace(std::string_view(user->id), user);
    } catch (...) {
        delete user;
        throw;
    }
    return user;
}

void UserInterner::release(InternedUser* user) noexcept {
    auto& shard = shard_for(user->id);
    std::lock_guard lock(shard.mu);
    if (--user->holders > 0) return;
    shard.users.erase(std::string_view(user->id));
    delete user;
}

std::size_t UserInterner::size() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
        std::lock_guard lock(shard.mu);
        n += shard.users.size();
    }
    return n;
}

}  // namespace myelin::auth::detail
