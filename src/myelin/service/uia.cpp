#include "myelin/service/uia.hpp"

#include <algorithm>
#include <utility>

#include <boost/json/array.hpp>
#include <sodium.h>

#include "myelin/json/body.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/user_ids.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

// One UIA session. Immutable after creation except the fields marked guarded (by the
// engine's mu_).
struct UiaEngine::Session {
    std::string id;
    std::string endpoint;
    std::string user_id;
    std::vector<std::vector<std::string>> flows;
    bool registration = false;
    std::int64_t created_ms = 0;
    std::vector<std::string> completed;             // guarded by mu_
    std::optional<std::string> registration_token;  // reserved by this session; guarded by mu_
    bool finished = false;  // used up or dropped: nothing may complete on it; guarded by mu_
};

namespace {

constexpr std::int64_t kSweepIntervalMs = 60'000;

std::string new_session_id() {
    static constexpr std::string_view kAlphabet =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string out(32, ' ');
    for (auto& c : out) {
        c = kAlphabet[randombytes_uniform(static_cast<std::uint32_t>(kAlphabet.size()))];
    }
    return out;
}

Error unknown_session() { return errors::make(400, "M_UNKNOWN", "Unknown or expired session ID"); }

// The m.login.password identifier as typed: identifier {type: m.id.user, user} or the legacy
// top-level `user`. nullopt: a third-party identifier (none is bound on this server).
Result<std::optional<std::string>> password_identifier(const boost::json::object& auth) {
    auto identifier = json::optional_object(auth, "identifier");
    if (!identifier) return identifier.error();
    if (*identifier) {
        auto type = json::required_string(**identifier, "type");
        if (!type) return type.error();
        if (*type == "m.id.user") {
            auto user = json::required_string(**identifier, "user");
            if (!user) return user.error();
            return std::optional<std::string>(std::move(*user));
        }
        if (*type == "m.id.thirdparty" || *type == "m.id.phone") {
            return std::optional<std::string>();
        }
        return errors::make(400, "M_UNKNOWN", "Unknown identifier type");
    }
    auto user = json::optional_string(auth, "user");
    if (!user) return user.error();
    if (!*user) return errors::missing_param("Missing 'identifier'");
    return std::optional<std::string>(std::move(**user));
}

}  // namespace

UiaEngine::UiaEngine(const Clock& clock, auth::PasswordHasher& hasher, storage::Database& db,
                     RegistrationTokens* registration_tokens, std::string server_name)
    : clock_(clock),
      hasher_(hasher),
      db_(db),
      registration_tokens_(registration_tokens),
      server_name_(std::move(server_name)) {}

// Reservations still held are not released here: the database may be closed already. Only a
// multi-stage flow holds one across requests; the flows offered today reserve and complete (or
// release) within one request.
UiaEngine::~UiaEngine() = default;

std::size_t UiaEngine::session_count() const {
    std::lock_guard lock(mu_);
    return sessions_.size();
}

void UiaEngine::expire_locked(std::int64_t now, std::vector<std::string>& to_release) {
    last_sweep_ms_ = now;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
        auto& s = *it->second;
        if (now - s.created_ms >= kSessionLifetimeMs) {
            s.finished = true;
            if (s.registration_token) to_release.push_back(std::move(*s.registration_token));
            s.registration_token.reset();
            it = sessions_.erase(it);
        } else {
            ++it;
        }
    }
}

void UiaEngine::release_tokens(const std::vector<std::string>& tokens) {
    if (!registration_tokens_) return;
    for (const auto& t : tokens) registration_tokens_->release_detached(t);
}

void UiaEngine::expire_sessions() {
    std::vector<std::string> to_release;
    {
        std::lock_guard lock(mu_);
        expire_locked(clock_.now_ms(), to_release);
    }
    release_tokens(to_release);
}

Result<std::shared_ptr<UiaEngine::Session>> UiaEngine::open_session(const UiaChallenge& challenge) {
    auto s = std::make_shared<Session>();
    s->id = new_session_id();
    s->endpoint = challenge.endpoint;
    s->user_id = challenge.user_id;
    s->flows = challenge.flows;
    s->registration = challenge.registration;
    s->created_ms = clock_.now_ms();
    std::vector<std::string> to_release;
    bool full = false;
    {
        std::lock_guard lock(mu_);
        if (sessions_.size() >= kMaxSessions) expire_locked(s->created_ms, to_release);
        full = sessions_.size() >= kMaxSessions;
        if (!full) sessions_.emplace(s->id, s);
    }
    release_tokens(to_release);
    if (full) return errors::unavailable("Too many authentication sessions in progress", 30);
    return s;
}

std::vector<std::string> UiaEngine::completed_of(const Session& session) const {
    std::lock_guard lock(mu_);
    return session.completed;
}

bool UiaEngine::flow_complete(const Session& session) const {
    std::lock_guard lock(mu_);
    for (const auto& flow : session.flows) {
        if (flow.empty()) continue;
        const bool all = std::all_of(flow.begin(), flow.end(), [&](const std::string& stage) {
            return std::find(session.completed.begin(), session.completed.end(), stage) !=
                   session.completed.end();
        });
        if (all) return true;
    }
    return false;
}

Error UiaEngine::challenge_error(const Session& session, std::string_view errcode,
                                 std::string_view message) const {
    Error e;
    e.status = 401;
    e.body_is_extra_only = true;
    boost::json::array flows;
    for (const auto& flow : session.flows) {
        boost::json::array stages;
        for (const auto& stage : flow) stages.emplace_back(stage);
        flows.emplace_back(boost::json::object{{"stages", std::move(stages)}});
    }
    e.extra["flows"] = std::move(flows);
    e.extra["params"] = boost::json::object{};
    e.extra["session"] = session.id;
    boost::json::array completed;
    for (const auto& stage : completed_of(session)) completed.emplace_back(stage);
    e.extra["completed"] = std::move(completed);
    if (!errcode.empty()) {
        e.errcode = std::string(errcode);
        e.message = std::string(message);
        e.extra["errcode"] = e.errcode;
        e.extra["error"] = e.message;
    }
    return e;
}

boost::asio::awaitable<Result<void>> UiaEngine::check_password(std::shared_ptr<Session> session,
                                                               std::string identified_user,
                                                               std::string password) {
    // Wrong passwords here spend the same per-account budget as wrong passwords at /login, so
    // UIA is no side door for guessing (a stolen access token does not give unlimited tries).
    RateLimiter::FailedLoginTicket ticket;
    if (limiter_) {
        auto reserve_op = limiter_->reserve_failed_login_async(identified_user);
        auto reserved = co_await std::move(reserve_op);
        if (!reserved) co_return reserved.error();
        ticket = *reserved;
    }
    auto found_job = [id = identified_user](storage::ReadTxn& txn) { return txn.find_user(id); };
    auto found_op = storage::read<std::optional<storage::UserRecord>>(db_, std::move(found_job));
    auto found = co_await std::move(found_op);
    if (!found) {
        if (limiter_) limiter_->release_failed_login(identified_user, ticket);
        co_return found.error();
    }
    // (if/else, not ?:, on purpose: g++ 12 destroys a ?: temporary twice inside coroutines.)
    std::string encoded;
    if (*found && !(*found)->deactivated) encoded = (*found)->password_hash;
    auto verify_op = hasher_.verify(std::move(password), std::move(encoded));
    auto verified = co_await std::move(verify_op);
    if (!verified) {
        if (limiter_) limiter_->release_failed_login(identified_user, ticket);
        co_return verified.error();
    }
    if (!verified->ok) co_return challenge_error(*session, "M_FORBIDDEN", "Invalid password");
    if (limiter_) limiter_->release_failed_login(identified_user, ticket);
    co_return Result<void>{};
}

boost::asio::awaitable<Result<void>> UiaEngine::check_registration_token(
    std::shared_ptr<Session> session, std::string token) {
    if (!RegistrationTokens::well_formed(token)) {
        co_return challenge_error(*session, "M_FORBIDDEN", "Invalid registration token");
    }
    auto reserve_op = registration_tokens_->reserve(token);
    auto reserved = co_await std::move(reserve_op);
    if (!reserved) co_return reserved.error();
    if (!*reserved) {
        co_return challenge_error(*session, "M_FORBIDDEN", "Invalid registration token");
    }
    bool keep = false;
    bool gone = false;
    {
        std::lock_guard lock(mu_);
        gone = session->finished;
        keep = !gone && !session->registration_token;
        if (keep) session->registration_token = token;
    }
    // A session that expired meanwhile, or a concurrent request on the same session that
    // reserved first: this reservation is not needed.
    if (!keep) registration_tokens_->release_detached(std::move(token));
    if (gone) co_return unknown_session();
    co_return Result<void>{};
}

boost::asio::awaitable<Result<UiaCompletion>> UiaEngine::authenticate(
    const boost::json::object* auth, UiaChallenge challenge) {
    const std::int64_t now = clock_.now_ms();
    {
        std::vector<std::string> to_release;
        {
            std::lock_guard lock(mu_);
            if (now - last_sweep_ms_ >= kSweepIntervalMs) expire_locked(now, to_release);
        }
        release_tokens(to_release);
    }

    // Everything needed from `auth` is copied out before the first suspension.
    std::shared_ptr<Session> session;
    std::optional<std::string> type;
    if (auth) {
        auto session_it = auth->find("session");
        if (session_it != auth->end() && !session_it->value().is_null()) {
            if (!session_it->value().is_string()) {
                co_return errors::bad_json("'auth.session' must be a string");
            }
            const std::string id(session_it->value().as_string());
            std::optional<std::string> expired_token;
            bool expired = false;
            {
                std::lock_guard lock(mu_);
                auto it = sessions_.find(id);
                if (it != sessions_.end()) {
                    if (now - it->second->created_ms >= kSessionLifetimeMs) {
                        expired = true;
                        it->second->finished = true;
                        expired_token = std::move(it->second->registration_token);
                        it->second->registration_token.reset();
                        sessions_.erase(it);
                    } else {
                        session = it->second;
                    }
                }
            }
            if (expired_token && registration_tokens_) {
                registration_tokens_->release_detached(std::move(*expired_token));
            }
            if (!session || expired) co_return unknown_session();
            // Synapse's rule (sytest "The operation must be consistent through an interactive
            // authentication session"): a session authorizes only the call it started on, for
            // the user it started for.
            if (session->endpoint != challenge.endpoint || session->user_id != challenge.user_id ||
                session->registration != challenge.registration) {
                co_return errors::forbidden(
                    "Requested operation has changed during the UI authentication session");
            }
        }
        auto type_it = auth->find("type");
        if (type_it != auth->end() && !type_it->value().is_null()) {
            if (!type_it->value().is_string()) {
                co_return errors::bad_json("'auth.type' must be a string");
            }
            type = std::string(type_it->value().as_string());
        }
    }
    if (!session) {
        // No session yet: the first request of the call (or a client such as matrix-nio that
        // sends a stage without asking first). Either way a session starts now.
        auto opened = open_session(challenge);
        if (!opened) co_return opened.error();
        session = std::move(*opened);
        if (!auth) co_return challenge_error(*session);
    }

    if (type) {
        bool done = false;
        bool offered = false;
        {
            std::lock_guard lock(mu_);
            const auto& completed = session->completed;
            done = std::find(completed.begin(), completed.end(), *type) != completed.end();
            // Offered: the next stage of a flow whose earlier stages are all completed.
            for (const auto& flow : session->flows) {
                if (flow.size() <= completed.size()) continue;
                if (!std::equal(completed.begin(), completed.end(), flow.begin())) continue;
                if (flow[completed.size()] == *type) offered = true;
            }
        }
        if (!done && !offered) {
            co_return challenge_error(*session, "M_UNRECOGNIZED",
                                      "Authentication type '" + *type + "' is not offered here");
        }
        if (!done && *type == kStageDummy) {
            std::lock_guard lock(mu_);
            session->completed.push_back(*type);
        } else if (!done && *type == kStagePassword && !challenge.user_id.empty()) {
            auto typed = password_identifier(*auth);
            if (!typed) co_return typed.error();
            auto password = json::required_string(*auth, "password");
            if (!password) co_return password.error();
            // The password must be the session user's own: when the request carries an access
            // token, the identifier has to name that same account.
            std::string resolved;
            if (*typed) {
                auto user_id = user_id_for_login(**typed, server_name_);
                if (user_id) resolved = std::move(*user_id);
            }
            if (resolved != session->user_id) {
                co_return challenge_error(*session, "M_FORBIDDEN",
                                          "The identifier does not match the signed-in user");
            }
            auto check_op = check_password(session, std::move(resolved), std::move(*password));
            auto checked = co_await std::move(check_op);
            if (!checked) co_return checked.error();
            std::lock_guard lock(mu_);
            if (!session->finished) session->completed.push_back(*type);
        } else if (!done && *type == kStageRegistrationToken && challenge.registration &&
                   registration_tokens_) {
            auto token = json::required_string(*auth, "token");
            if (!token) co_return token.error();
            auto check_op = check_registration_token(session, std::move(*token));
            auto checked = co_await std::move(check_op);
            if (!checked) co_return checked.error();
            std::lock_guard lock(mu_);
            if (!session->finished) session->completed.push_back(*type);
        } else if (!done) {
            co_return challenge_error(*session, "M_UNRECOGNIZED",
                                      "Authentication type '" + *type + "' is not offered here");
        }
    }

    if (!flow_complete(*session)) co_return challenge_error(*session);

    UiaCompletion out;
    out.session_id = session->id;
    {
        std::lock_guard lock(mu_);
        // Used up: exactly one request proceeds on a completed session.
        if (session->finished) co_return unknown_session();
        session->finished = true;
        out.registration_token = std::move(session->registration_token);
        session->registration_token.reset();
        sessions_.erase(session->id);
    }
    co_return out;
}

}  // namespace myelin::service
