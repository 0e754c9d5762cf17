#include "myelin/http/connection_quota.hpp"

namespace myelin::http {

bool ConnectionQuota::try_acquire(const std::string& key) {
    if (per_key_ == 0 || key.empty()) return true;
    std::lock_guard lock(mu_);
    std::size_t& count = held_[key];
    if (count >= per_key_) return false;
    ++count;
    return true;
}

void ConnectionQuota::release(const std::string& key) {
    if (per_key_ == 0 || key.empty()) return;
    std::lock_guard lock(mu_);
    auto it = held_.find(key);
    if (it == held_.end()) return;
    if (--it->second == 0) held_.erase(it);
}

std::size_t ConnectionQuota::held(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = held_.find(key);
    return it == held_.end() ? 0 : it->second;
}

}  // namespace myelin::http
