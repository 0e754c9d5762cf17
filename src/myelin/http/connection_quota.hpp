#pragma once

// Open connections per client address, so that one address cannot hold every connection slot
// (ServerLimits::max_connections) and lock everyone else out. The server asks for a slot when it
// accepts a connection and gives it back when the connection ends. Thread-safe: every network
// thread shares one quota.

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace myelin::http {

class ConnectionQuota {
public:
    // `per_key`: connections one key may hold at once; 0: no limit (try_acquire always succeeds).
    explicit ConnectionQuota(std::size_t per_key) : per_key_(per_key) {}

    // Takes a slot for `key`; false (nothing taken) when the key already holds per_key. An empty
    // key is never limited.
    bool try_acquire(const std::string& key);
    // Gives back a slot taken by a successful try_acquire(key).
    void release(const std::string& key);
    // Slots `key` holds now (for tests).
    std::size_t held(const std::string& key) const;

private:
    const std::size_t per_key_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::size_t> held_;  // guarded by mu_; no zero entries
};

}  // namespace myelin::http
