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

// One new stage for a session, written in one job.
struct UiaEngine::StageCommit {
    std::string session_id;
    std::vector<std::string> expected;   // the completed stages as the request read them
    std::vector<std::string> completed;  // the same plus the new stage
    // The m.login.registration_token stage: reserve a use of this token and hold it on the
    // session, in the same job.
    std::optional<std::string> reserve_token;
    bool finish = false;  // the new stage completes a flow: use the session up, in the same job
    std::int64_t now = 0;
    std::int64_t min_created_ts = 0;  // sessions created before are expired
};

// What commit_stage found and did.
struct UiaEngine::StageOutcome {
    enum class Kind {
        kStored,        // the stage is recorded; `session` is the session now
        kFinished,      // the stage is recorded and the session used up; `session` as stored
        kGone,          // the session expired, was used up or deleted meanwhile: nothing done
        kChanged,       // another request recorded a stage meanwhile: nothing done; `session`
                        // is the session now
        kTokenRefused,  // the registration token is unknown, expired or used up: nothing done
    };
    Kind kind = Kind::kGone;
    storage::UiaSessionRecord session;
};

namespace {

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

// The oldest created_ts of a session still alive at `now`.
std::int64_t min_created_at(std::int64_t now) { return now - UiaEngine::kSessionLifetimeMs + 1; }

bool contains(const std::vector<std::string>& stages, const std::string& stage) {
    return std::find(stages.begin(), stages.end(), stage) != stages.end();
}

// Whether `completed` covers every stage of some (non-empty) flow.
bool flow_complete(const std::vector<std::vector<std::string>>& flows,
                   const std::vector<std::string>& completed) {
    for (const auto& flow : flows) {
        if (flow.empty()) continue;
        const bool all = std::all_of(flow.begin(), flow.end(), [&](const std::string& stage) {
            return contains(completed, stage);
        });
        if (all) return true;
    }
    return false;
}

// Whether `type` is the next stage of a flow whose earlier stages are all completed.
bool offered_next(const std::vector<std::vector<std::string>>& flows,
                  const std::vector<std::string>& completed, const std::string& type) {
    for (const auto& flow : flows) {
        if (flow.size() <= completed.size()) continue;
        if (!std::equal(completed.begin(), completed.end(), flow.begin())) continue;
        if (flow[completed.size()] == type) return true;
    }
    return false;
}

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

// Everything a request's `auth` object says, copied out before the first suspension. Parse
// errors are kept, to be reported where the in-order checks reach them.
struct AuthInput {
    std::optional<std::string> session_id;
    std::optional<std::string> type;
    std::optional<Error> type_error;
    // m.login.password: the identifier (nullopt inside: third party) and the password;
    // m.login.registration_token: the token (in `secret`).
    std::optional<std::string> identifier;
    std::string secret;
    std::optional<Error> stage_error;
};

Result<AuthInput> read_auth(const boost::json::object& auth) {
    AuthInput in;
    auto session_it = auth.find("session");
    if (session_it != auth.end() && !session_it->value().is_null()) {
        if (!session_it->value().is_string()) {
            return errors::bad_json("'auth.session' must be a string");
        }
        in.session_id = std::string(session_it->value().as_string());
    }
    auto type_it = auth.find("type");
    if (type_it != auth.end() && !type_it->value().is_null()) {
        if (!type_it->value().is_string()) {
            in.type_error = errors::bad_json("'auth.type' must be a string");
            return in;
        }
        in.type = std::string(type_it->value().as_string());
    }
    if (in.type == kStagePassword) {
        auto typed = password_identifier(auth);
        if (!typed) {
            in.stage_error = typed.error();
            return in;
        }
        in.identifier = std::move(*typed);
        auto password = json::required_string(auth, "password");
        if (!password) {
            in.stage_error = password.error();
            return in;
        }
        in.secret = std::move(*password);
    } else if (in.type == kStageRegistrationToken) {
        auto token = json::required_string(auth, "token");
        if (!token) {
            in.stage_error = token.error();
            return in;
        }
        in.secret = std::move(*token);
    }
    return in;
}

}  // namespace

Result<UiaEngine::StageOutcome> UiaEngine::run_stage_commit(storage::WriteTxn& txn,
                                                            const StageCommit& c) {
    using Kind = StageOutcome::Kind;
    StageOutcome out;
    auto found = txn.find_uia_session(c.session_id);
    if (!found) return found.error();
    if (!*found || (*found)->finished || (*found)->created_ts < c.min_created_ts) {
        out.kind = Kind::kGone;
        return out;
    }
    out.session = std::move(**found);
    if (out.session.completed != c.expected) {
        out.kind = Kind::kChanged;
        return out;
    }
    std::optional<std::string_view> hold;
    if (c.reserve_token && !out.session.registration_token) {
        auto reserved = RegistrationTokens::reserve_in(txn, *c.reserve_token, c.now);
        if (!reserved) return reserved.error();
        if (!*reserved) {
            out.kind = Kind::kTokenRefused;
            return out;
        }
        hold = *c.reserve_token;
    }
    auto updated = txn.update_uia_session_stages(c.session_id, c.expected, c.completed, hold,
                                                 c.min_created_ts);
    if (!updated) return updated.error();
    // Read in this same transaction a moment ago: a mismatch is a bug (rolls the job back).
    if (!*updated) return errors::internal("UIA session changed inside its own transaction");
    if (c.finish) {
        auto finished = txn.finish_uia_session(c.session_id, c.min_created_ts);
        if (!finished) return finished.error();
        if (!*finished) return errors::internal("UIA session vanished inside its transaction");
        out.kind = Kind::kFinished;
        out.session = std::move(**finished);
        return out;
    }
    out.kind = Kind::kStored;
    out.session.completed = c.completed;
    if (hold) out.session.registration_token = std::string(*hold);
    return out;
}

UiaEngine::UiaEngine(const Clock& clock, auth::PasswordHasher& hasher, storage::Database& db,
                     RegistrationTokens* registration_tokens, std::string server_name,
                     std::int64_t max_sessions)
    : clock_(clock),
      hasher_(hasher),
      db_(db),
      registration_tokens_(registration_tokens),
      server_name_(std::move(server_name)),
      max_sessions_(max_sessions) {}

UiaEngine::~UiaEngine() = default;

std::size_t UiaEngine::session_count() const {
    const std::int64_t min_created = min_created_at(clock_.now_ms());
    auto counted = storage::read_sync<std::int64_t>(db_, [min_created](storage::ReadTxn& txn) {
        return txn.count_live_uia_sessions(min_created);
    });
    if (!counted) return 0;
    return static_cast<std::size_t>(*counted);
}

Result<std::int64_t> UiaEngine::prune_expired(storage::WriteTxn& txn, std::int64_t now_ms,
                                              int limit) {
    auto pruned = txn.prune_uia_sessions(min_created_at(now_ms), limit);
    if (!pruned) return pruned.error();
    // A token deleted meanwhile has nothing left to release: no error.
    for (const auto& token : pruned->held_tokens) {
        if (auto released = RegistrationTokens::release_in(txn, token); !released) {
            return released.error();
        }
    }
    return pruned->deleted;
}

Result<std::int64_t> UiaEngine::expire_sessions() {
    const std::int64_t now = clock_.now_ms();
    std::int64_t total = 0;
    for (;;) {
        auto deleted = storage::write_sync<std::int64_t>(
            db_, [now](storage::WriteTxn& txn) { return prune_expired(txn, now, kPruneBatch); });
        if (!deleted) return deleted.error();
        total += *deleted;
        if (*deleted < kPruneBatch) return total;
    }
}

boost::asio::awaitable<Result<void>> UiaEngine::admit_new_session(std::int64_t now) {
    bool recount = false;
    {
        std::lock_guard lock(count_mu_);
        if (!counted_ || now - counted_at_ms_ >= kRecountIntervalMs || now < counted_at_ms_) {
            counted_ = true;
            counted_at_ms_ = now;
            recount = true;
        }
    }
    if (recount) {
        const std::int64_t min_created = min_created_at(now);
        auto count_job = [min_created](storage::ReadTxn& txn) {
            return txn.count_live_uia_sessions(min_created);
        };
        auto count_op = storage::read<std::int64_t>(db_, std::move(count_job));
        auto live = co_await std::move(count_op);
        // A failed count keeps the old estimate; the insert that follows reports the outage.
        if (live) {
            std::lock_guard lock(count_mu_);
            live_counted_ = *live;
            opened_since_ = 0;
        }
    }
    bool full = false;
    {
        std::lock_guard lock(count_mu_);
        full = live_counted_ + opened_since_ >= max_sessions_;
        if (!full) ++opened_since_;
    }
    if (full) co_return errors::unavailable("Too many authentication sessions in progress", 30);
    co_return Result<void>{};
}

boost::asio::awaitable<Result<UiaEngine::Session>> UiaEngine::open_session(UiaChallenge challenge,
                                                                           std::int64_t now) {
    auto admit_op = admit_new_session(now);
    auto admitted = co_await std::move(admit_op);
    if (!admitted) co_return admitted.error();
    Session session;
    session.endpoint = std::move(challenge.endpoint);
    session.user_id = std::move(challenge.user_id);
    session.flows = std::move(challenge.flows);
    session.registration = challenge.registration;
    session.created_ts = now;
    auto insert_job = [session](storage::WriteTxn& txn) mutable -> Result<Session> {
        // 190 random bits: a collision is astronomically unlikely, but never fatal.
        for (int attempt = 0; attempt < 3; ++attempt) {
            session.session_id = new_session_id();
            auto inserted = txn.insert_uia_session(session);
            if (!inserted) return inserted.error();
            if (*inserted) return session;
        }
        return errors::internal("Could not generate a unique UIA session ID");
    };
    auto insert_op = storage::write<Session>(db_, std::move(insert_job));
    auto inserted = co_await std::move(insert_op);
    co_return inserted;
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
    e.extra["session"] = session.session_id;
    boost::json::array completed;
    for (const auto& stage : session.completed) completed.emplace_back(stage);
    e.extra["completed"] = std::move(completed);
    if (!errcode.empty()) {
        e.errcode = std::string(errcode);
        e.message = std::string(message);
        e.extra["errcode"] = e.errcode;
        e.extra["error"] = e.message;
    }
    return e;
}

boost::asio::awaitable<Result<bool>> UiaEngine::check_password(std::string user_id,
                                                               std::string password) {
    // Wrong passwords here spend the same per-account budget as wrong passwords at /login, so
    // UIA is no side door for guessing (a stolen access token does not give unlimited tries).
    RateLimiter::FailedLoginTicket ticket;
    if (limiter_) {
        auto reserve_op = limiter_->reserve_failed_login_async(user_id);
        auto reserved = co_await std::move(reserve_op);
        if (!reserved) co_return reserved.error();
        ticket = *reserved;
    }
    auto found_job = [id = user_id](storage::ReadTxn& txn) { return txn.find_user(id); };
    auto found_op = storage::read<std::optional<storage::UserRecord>>(db_, std::move(found_job));
    auto found = co_await std::move(found_op);
    if (!found) {
        if (limiter_) limiter_->release_failed_login(user_id, ticket);
        co_return found.error();
    }
    // (if/else, not ?:, on purpose: g++ 12 destroys a ?: temporary twice inside coroutines.)
    std::string encoded;
    if (*found && !(*found)->deactivated) encoded = (*found)->password_hash;
    auto verify_op = hasher_.verify(std::move(password), std::move(encoded));
    auto verified = co_await std::move(verify_op);
    if (!verified) {
        if (limiter_) limiter_->release_failed_login(user_id, ticket);
        co_return verified.error();
    }
    if (!verified->ok) co_return false;
    if (limiter_) limiter_->release_failed_login(user_id, ticket);
    co_return true;
}

boost::asio::awaitable<Result<UiaEngine::StageOutcome>> UiaEngine::commit_stage(
    StageCommit commit) {
    auto job = [commit = std::move(commit)](storage::WriteTxn& txn) {
        return run_stage_commit(txn, commit);
    };
    auto op = storage::write<StageOutcome>(db_, std::move(job));
    auto outcome = co_await std::move(op);
    co_return outcome;
}

boost::asio::awaitable<Result<UiaCompletion>> UiaEngine::authenticate(
    const boost::json::object* auth, UiaChallenge challenge) {
    const std::int64_t now = clock_.now_ms();
    const std::int64_t min_created = min_created_at(now);

    // Everything needed from `auth` is copied out before the first suspension.
    AuthInput in;
    if (auth) {
        auto read = read_auth(*auth);
        if (!read) co_return read.error();
        in = std::move(*read);
    }

    Session session;
    bool have_session = false;
    if (in.session_id) {
        auto find_job = [id = *in.session_id](storage::ReadTxn& txn) {
            return txn.find_uia_session(id);
        };
        auto find_op = storage::read<std::optional<Session>>(db_, std::move(find_job));
        auto found = co_await std::move(find_op);
        if (!found) co_return found.error();
        // Expired rows stay until housekeeping deletes them (releasing what they hold).
        if (!*found || (*found)->finished || (*found)->created_ts < min_created) {
            co_return unknown_session();
        }
        session = std::move(**found);
        have_session = true;
        // Synapse's rule (sytest "The operation must be consistent through an interactive
        // authentication session"): a session authorizes only the call it started on, for
        // the user it started for.
        if (session.endpoint != challenge.endpoint || session.user_id != challenge.user_id ||
            session.registration != challenge.registration) {
            co_return errors::forbidden(
                "Requested operation has changed during the UI authentication session");
        }
    }
    if (in.type_error) co_return *in.type_error;
    if (!have_session) {
        // No session yet: the first request of the call (or a client such as matrix-nio that
        // sends a stage without asking first). Either way a session starts now.
        auto open_op = open_session(challenge, now);
        auto opened = co_await std::move(open_op);
        if (!opened) co_return opened.error();
        session = std::move(*opened);
        if (!auth) co_return challenge_error(session);
    }

    if (in.type) {
        const std::string& type = *in.type;
        const bool done = contains(session.completed, type);
        if (!done && !offered_next(session.flows, session.completed, type)) {
            co_return challenge_error(session, "M_UNRECOGNIZED",
                                      "Authentication type '" + type + "' is not offered here");
        }
        StageCommit commit;
        bool new_stage = false;
        if (!done && type == kStageDummy) {
            new_stage = true;
        } else if (!done && type == kStagePassword && !challenge.user_id.empty()) {
            if (in.stage_error) co_return *in.stage_error;
            // The password must be the session user's own: when the request carries an access
            // token, the identifier has to name that same account.
            std::string resolved;
            if (in.identifier) {
                auto user_id = user_id_for_login(*in.identifier, server_name_);
                if (user_id) resolved = std::move(*user_id);
            }
            if (resolved != session.user_id) {
                co_return challenge_error(session, "M_FORBIDDEN",
                                          "The identifier does not match the signed-in user");
            }
            auto check_op = check_password(std::move(resolved), std::move(in.secret));
            auto checked = co_await std::move(check_op);
            if (!checked) co_return checked.error();
            if (!*checked) co_return challenge_error(session, "M_FORBIDDEN", "Invalid password");
            new_stage = true;
        } else if (!done && type == kStageRegistrationToken && challenge.registration &&
                   registration_tokens_) {
            if (in.stage_error) co_return *in.stage_error;
            if (!RegistrationTokens::well_formed(in.secret)) {
                co_return challenge_error(session, "M_FORBIDDEN", "Invalid registration token");
            }
            commit.reserve_token = std::move(in.secret);
            new_stage = true;
        } else if (!done) {
            co_return challenge_error(session, "M_UNRECOGNIZED",
                                      "Authentication type '" + type + "' is not offered here");
        }

        if (new_stage) {
            commit.session_id = session.session_id;
            commit.expected = session.completed;
            commit.completed = session.completed;
            commit.completed.push_back(type);
            commit.finish = flow_complete(session.flows, commit.completed);
            commit.now = now;
            commit.min_created_ts = min_created;
            auto commit_op = commit_stage(std::move(commit));
            auto outcome = co_await std::move(commit_op);
            if (!outcome) co_return outcome.error();
            using Kind = StageOutcome::Kind;
            switch (outcome->kind) {
                case Kind::kGone:
                    co_return unknown_session();
                case Kind::kTokenRefused:
                    co_return challenge_error(session, "M_FORBIDDEN", "Invalid registration token");
                case Kind::kFinished: {
                    // Used up: this request, and no other, proceeds on the session.
                    UiaCompletion out;
                    out.session_id = outcome->session.session_id;
                    out.registration_token = std::move(outcome->session.registration_token);
                    co_return out;
                }
                case Kind::kStored:
                case Kind::kChanged:
                    // Stored: a flow still lacks stages. Changed: a concurrent request on the
                    // same session got there first; go on from what it left.
                    session = std::move(outcome->session);
                    break;
            }
        }
    }

    if (!flow_complete(session.flows, session.completed)) co_return challenge_error(session);

    // Every stage was completed by earlier requests: this one uses the session up, unless a
    // concurrent one (on any process) already did.
    auto finish_job = [id = session.session_id, min_created](storage::WriteTxn& txn) {
        return txn.finish_uia_session(id, min_created);
    };
    auto finish_op = storage::write<std::optional<Session>>(db_, std::move(finish_job));
    auto finished = co_await std::move(finish_op);
    if (!finished) co_return finished.error();
    if (!*finished) co_return unknown_session();
    UiaCompletion out;
    out.session_id = (*finished)->session_id;
    out.registration_token = std::move((*finished)->registration_token);
    co_return out;
}

}  // namespace myelin::service
