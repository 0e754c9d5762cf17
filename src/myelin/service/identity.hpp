#pragma once

// Who is making an authenticated request: resolved from the access token before the handler
// runs. Cheap to copy (a counted reference to the cached session, which stays valid while the
// Identity lives even if the session is revoked meanwhile).

#include <memory>
#include <string>

#include "myelin/auth/token_cache.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::service {

struct Identity {
    auth::SessionRef session;     // never null
    std::int64_t generation = 0;  // of the access token used
    storage::TokenHash token_hash{};

    const std::string& user_id() const { return session->user_id(); }
    const std::string& device_id() const { return session->device_id; }
    bool is_guest() const { return session->is_guest; }
};

}  // namespace myelin::service
