#pragma once

// The answer of the authorization rules: allowed or refused, with the number of the rule that
// decided (as numbered in the room version's "Authorization rules", e.g. "4.3.2") and, when
// refused, a reason for logs and the 403 M_FORBIDDEN a client gets. Plain value.

#include <string>
#include <utility>

namespace myelin::events {

struct AuthDecision {
    bool allowed = false;
    std::string rule;
    std::string reason;

    [[nodiscard]] static AuthDecision allow(std::string rule) {
        return AuthDecision{true, std::move(rule), {}};
    }
    [[nodiscard]] static AuthDecision refuse(std::string rule, std::string reason) {
        return AuthDecision{false, std::move(rule), std::move(reason)};
    }
    explicit operator bool() const noexcept { return allowed; }
};

}  // namespace myelin::events
