#include "myelin/service/uia.hpp"

#include <boost/json/array.hpp>
#include <sodium.h>

namespace myelin::service {
namespace {

constexpr std::int64_t kSessionLifetimeMs = 15 * 60 * 1000;
constexpr std::size_t kMaxSessions = 100'000;

std::string new_session_id() {
    static constexpr std::string_view kAlphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string out(24, ' ');
    for (auto& c : out) c = kAlphabet[randombytes_uniform(kAlphabet.size())];
    return out;
}

}  // namespace

void UiaSessions::expire_locked(std::int64_t now) {
    for (auto it = sessions_.begin(); it != sessions_.end();) {
        if (now - it->second.created_ms > kSessionLifetimeMs) {
            it = sessions_.erase(it);
        } else {
            ++it;
        }
    }
}

Error UiaSessions::challenge(std::string_view endpoint, const std::string* errcode,
                             std::string_view message) {
    std::string id = new_session_id();
    {
        std::lock_guard lock(mu_);
        const auto now = clock_.now_ms();
        if (sessions_.size() >= kMaxSessions) expire_locked(now);
        sessions_[id] = Session{std::string(endpoint), now};
    }
    Error e;
    e.status = 401;
    e.body_is_extra_only = true;
    boost::json::array stages{"m.login.dummy"};
    boost::json::object flow{{"stages", stages}};
    e.extra["flows"] = boost::json::array{flow};
    e.extra["params"] = boost::json::object{};
    e.extra["session"] = id;
    if (errcode) {
        e.extra["errcode"] = *errcode;
        e.extra["error"] = std::string(message);
    }
    return e;
}

Result<void> UiaSessions::require_dummy(const boost::json::object* auth,
                                        std::string_view endpoint) {
    if (!auth) return challenge(endpoint);
    auto session_it = auth->find("session");
    if (session_it != auth->end() && !session_it->value().is_null()) {
        if (!session_it->value().is_string())
            return errors::bad_json("'auth.session' must be a string");
        std::string id(session_it->value().as_string());
        std::lock_guard lock(mu_);
        auto it = sessions_.find(id);
        const auto now = clock_.now_ms();
        if (it == sessions_.end() || now - it->second.created_ms > kSessionLifetimeMs) {
            return errors::make(400, "M_UNKNOWN", "Unknown or expired session ID");
        }
        if (it->second.endpoint != endpoint) {
            return errors::forbidden(
                "Requested operation has changed during the UI authentication session");
        }
    }
    auto type_it = auth->find("type");
    if (type_it == auth->end() || type_it->value().is_null()) {
        // Completion of an out-of-band stage: none exists in the dummy flow.
        std::string code = "M_FORBIDDEN";
        return challenge(endpoint, &code, "Authentication stage not completed");
    }
    if (!type_it->value().is_string()) return errors::bad_json("'auth.type' must be a string");
    if (type_it->value().as_string() != "m.login.dummy") {
        std::string code = "M_UNRECOGNIZED";
        return challenge(endpoint, &code, "Unsupported authentication type");
    }
    if (session_it != auth->end() && session_it->value().is_string()) {
        std::lock_guard lock(mu_);
        sessions_.erase(std::string(session_it->value().as_string()));
    }
    return {};
}

}  // namespace myelin::service
