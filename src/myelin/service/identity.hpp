#pragma once

// Who is making an authenticated request: resolved from the access token before the handler
// runs. Cheap to copy (shares the cached session).

#include <memory>
#include <string>

#include "myelin/auth/token_cache.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::service {

struct Identity {
    std::shared_ptr<auth::CachedSession> session;  // never null
    std::int64_t generation = 0;                   // of the access token used
    storage::TokenHash token_hash{};

    const std::string& user_id() const { return session->user_id; }
    const std::string& device_id() const { return session->device_id; }
    bool is_guest() const { return session->is_guest; }
};

}  // namespace myelin::service
