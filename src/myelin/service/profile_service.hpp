#pragma once

// User profiles (profile.yaml): display name and avatar URL of local users. Registration sets
// the display name to the localpart (as Synapse does; AccountService). Thread-safety: all
// methods may be called concurrently; storage work runs on the database's threads.

#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// Longest display name and avatar URL accepted, in bytes (Synapse: 256 and 1000).
inline constexpr std::size_t kMaxDisplayNameBytes = 256;
inline constexpr std::size_t kMaxAvatarUrlBytes = 1000;

enum class ProfileField { kDisplayName, kAvatarUrl };

class ProfileService {
public:
    // `db` must outlive the service.
    explicit ProfileService(storage::Database& db) : db_(db) {}

    // The profile of a local user (fields unset when never set). Errors: 404 M_NOT_FOUND when
    // there is no such user, 503.
    boost::asio::awaitable<Result<storage::ProfileRecord>> get(std::string user_id);

    // Sets (nullopt: clears) one field of the user's own profile. Errors: 503.
    boost::asio::awaitable<Result<void>> set(std::string user_id, ProfileField field,
                                             std::optional<std::string> value);

private:
    storage::Database& db_;
};

}  // namespace myelin::service
