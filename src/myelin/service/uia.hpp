#pragma once

// User-Interactive Authentication sessions: the first request without `auth` opens a session
// bound to the endpoint it started on; later requests carry its id back. Sessions expire after
// 15 minutes. This first version offers the single stage m.login.dummy (registration).
// Thread-safety: all methods are safe to call concurrently.

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <boost/json/object.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"

namespace myelin::service {

class UiaSessions {
public:
    explicit UiaSessions(const Clock& clock) : clock_(clock) {}

    // Checks the request's `auth` object (nullptr: absent) against the single flow
    // [m.login.dummy] for `endpoint`. Success: the stage is complete. Errors: 401 with the UIA
    // body (flows, params, session; plus errcode when an attempt failed), or 400 M_UNKNOWN for an
    // unknown or foreign session id.
    Result<void> require_dummy(const boost::json::object* auth, std::string_view endpoint);

private:
    struct Session {
        std::string endpoint;
        std::int64_t created_ms = 0;
    };
    Error challenge(std::string_view endpoint, const std::string* errcode = nullptr,
                    std::string_view message = {});
    void expire_locked(std::int64_t now);

    const Clock& clock_;
    std::mutex mu_;
    std::unordered_map<std::string, Session> sessions_;  // guarded by mu_
};

}  // namespace myelin::service
