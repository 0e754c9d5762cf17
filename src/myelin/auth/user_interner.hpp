#pragma once

// One shared copy of each user ID held by the token cache's session records (a user's sessions
// share it), counted by the records using it: one allocation per user, not per session.
//
// Thread-safety: acquire() and release() may be called concurrently from any thread (sharded
// mutexes). An InternedUser's `id` is immutable while any record holds it.

#include <array>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace myelin::auth::detail {

struct InternedUser {
    std::string id;
    std::size_t holders = 0;  // guarded by the interner's shard mutex

    static const std::string& empty() {
        static const std::string kEmpty;
        return kEmpty;
    }
};

class UserInterner {
public:
    UserInterner() = default;
    UserInterner(const UserInterner&) = delete;
    UserInterner& operator=(const UserInterner&) = delete;
    ~UserInterner();

    // The shared copy of `user_id`, with one more holder. Throws std::bad_alloc.
    InternedUser* acquire(std::string_view user_id);
    // One holder fewer; the copy is freed with its last holder.
    void release(InternedUser* user) noexcept;
    // Distinct user IDs held (for tests).
    std::size_t size() const;

private:
    static constexpr std::size_t kShards = 16;
    struct Shard {
        mutable std::mutex mu;
        std::unordered_map<std::string_view, InternedUser*> users;  // keys view their `id`
    };
    Shard& shard_for(std::string_view user_id);
    std::array<Shard, kShards> shards_;
};

}  // namespace myelin::auth::detail
