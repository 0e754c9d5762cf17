#include "myelin/service/account_service.hpp"

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/service/user_ids.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

// "alice" of "@alice:server".
std::string localpart_of(std::string_view user_id) {
    auto colon = user_id.find(':');
    return std::string(user_id.substr(1, colon == std::string_view::npos ? 0 : colon - 1));
}

// myelin_logins_total{outcome}, registered once.
struct LoginMetrics {
    static constexpr std::string_view kName = "myelin_logins_total";
    static constexpr std::string_view kHelp = "Password logins by outcome";
    metrics::Counter& ok = metrics::counter(kName, kHelp, {{"outcome", "ok"}});
    metrics::Counter& failed = metrics::counter(kName, kHelp, {{"outcome", "failed"}});
};

LoginMetrics& login_metrics() {
    static LoginMetrics m;
    return m;
}

// myelin_registrations_total{kind}, registered once.
struct RegistrationMetrics {
    static constexpr std::string_view kName = "myelin_registrations_total";
    static constexpr std::string_view kHelp = "Accounts registered through POST /register, by kind";
    metrics::Counter& user = metrics::counter(kName, kHelp, {{"kind", "user"}});
    metrics::Counter& guest = metrics::counter(kName, kHelp, {{"kind", "guest"}});
};

RegistrationMetrics& registration_metrics() {
    static RegistrationMetrics m;
    return m;
}

Error user_in_use() { return errors::make(400, "M_USER_IN_USE", "User ID already taken"); }

storage::SecurityEventRecord event(const std::string& user_id, const std::string& device_id,
                                   std::int64_t ts, std::string kind, std::string detail) {
    storage::SecurityEventRecord e;
    e.user_id = user_id;
    e.device_id = device_id;
    e.ts = ts;
    e.kind = std::move(kind);
    e.detail = std::move(detail);
    return e;
}

}  // namespace

AccountService::AccountService(storage::Database& db, auth::PasswordHasher& hasher,
                               SessionService& sessions, UiaEngine& uia,
                               RegistrationTokens& registration_tokens, const Config& config,
                               const Clock& clock)
    : db_(db),
      hasher_(hasher),
      sessions_(sessions),
      uia_(uia),
      registration_tokens_(registration_tokens),
      config_(config),
      clock_(clock) {
    // Every series exists from start-up, at zero (Prometheus rates need the first sample).
    login_metrics();
    registration_metrics();
}

Result<void> AccountService::check_password_length(const std::string& password) const {
    if (password.size() > config_.passwords.max_length) {
        return errors::invalid_param("Password too long (max " +
                                     std::to_string(config_.passwords.max_length) + " bytes)");
    }
    return {};
}

boost::asio::awaitable<Result<void>> AccountService::check_available(std::string username) {
    auto localpart = localpart_for_registration(username, config_.server_name);
    if (!localpart) co_return localpart.error();
    const std::string user_id = make_user_id(*localpart, config_.server_name);
    auto found_job = [user_id](storage::ReadTxn& txn) -> Result<bool> {
        auto u = txn.find_user(user_id);
        if (!u) return u.error();
        return u->has_value();
    };
    auto found_op = storage::read<bool>(db_, std::move(found_job));
    auto found = co_await std::move(found_op);
    if (!found) co_return found.error();
    if (*found) co_return user_in_use();
    co_return Result<void>{};
}

namespace {

Error no_such_user() { return errors::not_found("No such user"); }

}  // namespace

boost::asio::awaitable<Result<RegistrationResult>> AccountService::register_account(
    RegistrationRequest request) {
    if (!config_.registration.enabled) co_return errors::forbidden("Registration is disabled");
    if (request.guest) {
        if (!config_.registration.allow_guests) {
            co_return errors::forbidden("Guest access is disabled");
        }
        // Guests: every field but initial_device_display_name is ignored, no UIA.
        RegistrationRequest guest;
        guest.guest = true;
        guest.initial_device_display_name = std::move(request.initial_device_display_name);
        request = std::move(guest);
    }
    if (request.password) {
        if (auto r = check_password_length(*request.password); !r) co_return r.error();
    }

    std::string localpart;
    if (request.username && !request.guest) {
        auto checked = localpart_for_registration(*request.username, config_.server_name);
        if (!checked) co_return checked.error();
        localpart = std::move(*checked);
        auto available_op = check_available(localpart);
        auto available = co_await std::move(available_op);
        if (!available) co_return available.error();
    } else {
        localpart = generate_localpart();
    }

    // From here on a reserved registration token must be completed with the account, or
    // released when the registration fails.
    std::optional<std::string> registration_token;
    if (!request.guest) {
        UiaChallenge challenge;
        challenge.endpoint = "POST /register";
        challenge.registration = true;
        if (config_.registration.requires_token) {
            challenge.flows = {{std::string(kStageRegistrationToken)}};
        } else {
            challenge.flows = {{std::string(kStageDummy)}};
        }
        const boost::json::object* auth = nullptr;
        if (request.auth) auth = &*request.auth;
        auto uia_op = uia_.authenticate(auth, std::move(challenge));
        auto completed = co_await std::move(uia_op);
        if (!completed) co_return completed.error();
        registration_token = std::move(completed->registration_token);
    }

    std::string password_hash;
    if (request.password) {
        auto hash_op = hasher_.hash(*request.password);
        auto hashed = co_await std::move(hash_op);
        if (!hashed) {
            if (registration_token) registration_tokens_.release_detached(*registration_token);
            co_return hashed.error();
        }
        password_hash = std::move(*hashed);
    }

    const std::string user_id = make_user_id(localpart, config_.server_name);
    std::string device_id;
    if (request.device_id && !request.guest) {
        device_id = *request.device_id;
    } else {
        device_id = generate_device_id();
    }
    const std::int64_t now = clock_.now_ms();
    auto created_job = [&, this](storage::WriteTxn& txn) -> Result<std::optional<NewSession>> {
        storage::UserRecord user;
        user.user_id = user_id;
        user.password_hash = password_hash;
        user.is_guest = request.guest;
        user.created_ts = now;
        // A deactivated account keeps its row, so its user ID stays taken here for good.
        auto inserted = txn.insert_user(user);
        if (!inserted) return inserted.error();
        if (!*inserted) return user_in_use();
        // The display name starts as the localpart, as Synapse does.
        if (auto r = txn.upsert_profile({user_id, localpart_of(user_id), std::nullopt}); !r) {
            return r.error();
        }
        std::string detail = "account";
        if (request.guest) detail = "guest account";
        if (registration_token) {
            if (auto r = RegistrationTokens::complete_in(txn, *registration_token); !r) {
                return r.error();
            }
            detail += " (with a registration token)";
        }
        if (auto r = txn.insert_security_event(event(user_id, "", now, "registered", detail)); !r) {
            return r.error();
        }
        if (request.inhibit_login) return std::optional<NewSession>{};
        storage::DeviceRecord device;
        device.user_id = user_id;
        device.device_id = device_id;
        device.display_name = request.initial_device_display_name;
        device.created_ts = now;
        if (auto r = txn.ensure_device(device); !r) return r.error();
        auto session = sessions_.create_session(
            txn, user_id, device_id, request.refresh_token && !request.guest, request.guest);
        if (!session) return session.error();
        return std::optional<NewSession>(std::move(*session));
    };
    auto created_op = storage::write<std::optional<NewSession>>(db_, std::move(created_job));
    auto created = co_await std::move(created_op);
    if (!created) {
        if (registration_token) registration_tokens_.release_detached(*registration_token);
        co_return created.error();
    }
    if (request.guest) {
        registration_metrics().guest.inc();
    } else {
        registration_metrics().user.inc();
    }
    RegistrationResult out;
    out.user_id = user_id;
    if (*created) {
        sessions_.publish_session(**created);
        out.tokens = std::move((*created)->tokens);
    }
    co_return out;
}

boost::asio::awaitable<Result<void>> AccountService::change_password(std::string user_id,
                                                                     std::string new_password,
                                                                     bool logout_devices,
                                                                     std::int64_t keep_session_id) {
    if (auto r = check_password_length(new_password); !r) co_return r.error();
    auto hash_op = hasher_.hash(std::move(new_password));
    auto hashed = co_await std::move(hash_op);
    if (!hashed) co_return hashed.error();
    const std::int64_t now = clock_.now_ms();
    auto set_job = [user_id, hash = std::move(*hashed), now,
                    logout_devices](storage::WriteTxn& txn) -> Result<bool> {
        auto user = txn.find_user(user_id);
        if (!user) return user.error();
        if (!*user) return no_such_user();
        if ((*user)->deactivated) return errors::forbidden("This account has been deactivated");
        if (auto r = txn.set_password_hash(user_id, hash); !r) return r.error();
        std::string detail = "password changed";
        if (logout_devices) detail += "; other devices signed out";
        if (auto r = txn.insert_security_event(event(user_id, "", now, "password_change", detail));
            !r) {
            return r.error();
        }
        return true;
    };
    auto set_op = storage::write<bool>(db_, std::move(set_job));
    auto set = co_await std::move(set_op);
    if (!set) co_return set.error();
    if (logout_devices) {
        // Every other session ends and its device goes; the caller's session stays valid.
        auto end_op = sessions_.end_sessions(user_id, std::nullopt, keep_session_id,
                                             storage::RevokeReason::kPasswordChange, true);
        auto ended = co_await std::move(end_op);
        if (!ended) co_return ended.error();
    }
    co_return Result<void>{};
}

boost::asio::awaitable<Result<void>> AccountService::deactivate(std::string user_id) {
    const std::int64_t now = clock_.now_ms();
    auto mark_job = [user_id, now](storage::WriteTxn& txn) -> Result<bool> {
        auto user = txn.find_user(user_id);
        if (!user) return user.error();
        if (!*user) return no_such_user();
        if ((*user)->deactivated) return false;
        auto marked = txn.set_user_deactivated(user_id, true);
        if (!marked) return marked.error();
        if (!*marked) return no_such_user();
        if (auto r = txn.insert_security_event(
                event(user_id, "", now, "deactivated", "account deactivated; all sessions end"));
            !r) {
            return r.error();
        }
        return true;
    };
    auto mark_op = storage::write<bool>(db_, std::move(mark_job));
    auto marked = co_await std::move(mark_op);
    if (!marked) co_return marked.error();
    // After the flag: a login racing with this finds the account deactivated, and whatever
    // session existed before ends now (also on a repeated call, which completes a deactivation
    // whose second step failed).
    auto end_op = sessions_.end_sessions(user_id, std::nullopt, std::nullopt,
                                         storage::RevokeReason::kDeactivated, true);
    auto ended = co_await std::move(end_op);
    if (!ended) co_return ended.error();
    if (*marked) log::app()->info("account {} deactivated ({} sessions ended)", user_id, *ended);
    co_return Result<void>{};
}

boost::asio::awaitable<Result<std::string>> AccountService::create_user(
    std::string localpart, std::optional<std::string> password, bool admin) {
    auto checked = localpart_for_registration(localpart, config_.server_name);
    if (!checked) co_return checked.error();
    std::string password_hash;
    if (password) {
        if (auto r = check_password_length(*password); !r) co_return r.error();
        auto hash_op = hasher_.hash(std::move(*password));
        auto hashed = co_await std::move(hash_op);
        if (!hashed) co_return hashed.error();
        password_hash = std::move(*hashed);
    }
    const std::string user_id = make_user_id(*checked, config_.server_name);
    const std::int64_t now = clock_.now_ms();
    auto created_job = [user_id, hash = std::move(password_hash), admin,
                        now](storage::WriteTxn& txn) -> Result<bool> {
        storage::UserRecord user;
        user.user_id = user_id;
        user.password_hash = hash;
        user.is_admin = admin;
        user.created_ts = now;
        auto inserted = txn.insert_user(user);
        if (!inserted) return inserted.error();
        if (!*inserted) return user_in_use();
        // The display name starts as the localpart, as Synapse does.
        if (auto r = txn.upsert_profile({user_id, localpart_of(user_id), std::nullopt}); !r) {
            return r.error();
        }
        std::string detail = "account created by an administrator";
        if (admin) detail += " (admin)";
        if (auto r = txn.insert_security_event(event(user_id, "", now, "registered", detail)); !r) {
            return r.error();
        }
        return true;
    };
    auto created_op = storage::write<bool>(db_, std::move(created_job));
    auto created = co_await std::move(created_op);
    if (!created) co_return created.error();
    co_return user_id;
}

boost::asio::awaitable<Result<void>> AccountService::reset_password(std::string user_id,
                                                                    std::string new_password) {
    if (auto r = check_password_length(new_password); !r) co_return r.error();
    auto hash_op = hasher_.hash(std::move(new_password));
    auto hashed = co_await std::move(hash_op);
    if (!hashed) co_return hashed.error();
    const std::int64_t now = clock_.now_ms();
    auto set_job = [user_id, hash = std::move(*hashed),
                    now](storage::WriteTxn& txn) -> Result<bool> {
        auto user = txn.find_user(user_id);
        if (!user) return user.error();
        if (!*user) return no_such_user();
        if (auto r = txn.set_password_hash(user_id, hash); !r) return r.error();
        if (auto r = txn.insert_security_event(event(user_id, "", now, "password_reset",
                                                     "password reset by an administrator; "
                                                     "all sessions end"));
            !r) {
            return r.error();
        }
        return true;
    };
    auto set_op = storage::write<bool>(db_, std::move(set_job));
    auto set = co_await std::move(set_op);
    if (!set) co_return set.error();
    auto end_op = sessions_.end_sessions(user_id, std::nullopt, std::nullopt,
                                         storage::RevokeReason::kAdmin, true);
    auto ended = co_await std::move(end_op);
    if (!ended) co_return ended.error();
    co_return Result<void>{};
}

boost::asio::awaitable<Result<IssuedTokens>> AccountService::login(LoginRequest request) {
    auto& counted = login_metrics();
    if (auto r = check_password_length(request.password); !r) {
        counted.failed.inc();
        co_return r.error();
    }
    auto user_id = user_id_for_login(request.user, config_.server_name);
    if (!user_id) {
        counted.failed.inc();
        co_return user_id.error();
    }
    // The account's failed-login budget, whether or not the account exists (guesses at unknown
    // names cost the same), taken before any hashing; it goes back unless this is a wrong guess.
    RateLimiter::FailedLoginTicket ticket;
    if (limiter_) {
        auto reserve_op = limiter_->reserve_failed_login_async(*user_id);
        auto reserved = co_await std::move(reserve_op);
        if (!reserved) {
            counted.failed.inc();
            co_return reserved.error();
        }
        ticket = *reserved;
    }

    auto found_job = [id = *user_id](storage::ReadTxn& txn) { return txn.find_user(id); };
    auto found_op = storage::read<std::optional<storage::UserRecord>>(db_, std::move(found_job));
    auto found = co_await std::move(found_op);
    if (!found) {
        if (limiter_) limiter_->release_failed_login(*user_id, ticket);
        counted.failed.inc();
        co_return found.error();
    }
    // An unknown user is checked against a dummy hash: the same work and the same answer.
    // (if/else, not ?:, on purpose: g++ 12 destroys a ?: temporary twice inside coroutines.)
    std::string encoded;
    if (*found) encoded = (*found)->password_hash;
    auto verify_op = hasher_.verify(request.password, encoded);
    auto verified = co_await std::move(verify_op);
    if (!verified) {
        // Overload (503) or an operator problem: no password was tried, so nothing is spent.
        if (limiter_) limiter_->release_failed_login(*user_id, ticket);
        counted.failed.inc();
        co_return verified.error();
    }
    if (!verified->ok) {
        counted.failed.inc();
        if (ticket.exhausted_now && *found) {
            // This guess spent the account's last token: recorded once per lockout, for real
            // accounts only (unknown names have no event log).
            log::app()->warn("failed-login limit reached for {}: further attempts refused",
                             *user_id);
            auto lockout = event(*user_id, "", clock_.now_ms(), "rate_limit_lockout",
                                 "too many failed logins; further attempts are refused until "
                                 "the budget refills");
            auto lockout_job = [lockout](storage::WriteTxn& txn) -> Result<bool> {
                if (auto r = txn.insert_security_event(lockout); !r) return r.error();
                return true;
            };
            auto lockout_op = storage::write<bool>(db_, std::move(lockout_job));
            auto recorded = co_await std::move(lockout_op);
            if (!recorded) {
                log::app()->warn("could not record a rate_limit_lockout event: {}",
                                 recorded.error().message);
            }
        }
        co_return errors::forbidden("Invalid username or password");
    }
    if (limiter_) limiter_->release_failed_login(*user_id, ticket);
    const auto& user = **found;
    if (user.deactivated) {
        counted.failed.inc();
        co_return errors::make(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    }

    std::optional<std::string> upgraded_hash;
    if (verified->needs_rehash) {
        auto hash_op = hasher_.hash(request.password);
        auto hashed = co_await std::move(hash_op);
        if (hashed) upgraded_hash = std::move(*hashed);  // on overload keep the old hash for now
    }

    std::string device_id;
    if (request.device_id) {
        device_id = *request.device_id;
    } else {
        device_id = generate_device_id();
    }
    const std::int64_t now = clock_.now_ms();
    auto created_job = [&, this](storage::WriteTxn& txn) -> Result<NewSession> {
        // The password was checked against a read made before hashing (~100 ms ago). Writes are
        // serialised, so looking again here closes the window: a deactivation or a password
        // change that committed meanwhile wins, and its session sweep (which runs after its
        // commit) cannot miss a session created behind it.
        auto current = txn.find_user(user.user_id);
        if (!current) return current.error();
        if (!*current || (*current)->deactivated) {
            return errors::make(403, "M_USER_DEACTIVATED", "This account has been deactivated");
        }
        // A changed hash means the password was changed, unless this login was upgrading an
        // old hash: then a concurrent login most likely upgraded it first, and this one keeps
        // the stored hash rather than overwrite it.
        const bool hash_changed = (*current)->password_hash != user.password_hash;
        if (hash_changed && !upgraded_hash) {
            return errors::forbidden("Invalid username or password");
        }
        storage::DeviceRecord device;
        device.user_id = user.user_id;
        device.device_id = device_id;
        device.display_name = request.initial_device_display_name;
        device.created_ts = now;
        auto is_new = txn.ensure_device(device);
        if (!is_new) return is_new.error();
        if (upgraded_hash && !hash_changed) {
            if (auto r = txn.set_password_hash(user.user_id, *upgraded_hash); !r) {
                return r.error();
            }
        }
        auto session = sessions_.create_session(txn, user.user_id, device_id, request.refresh_token,
                                                user.is_guest);
        if (!session) return session.error();
        if (auto r = txn.insert_security_event(event(user.user_id, device_id, now,
                                                     *is_new ? "login_new_device" : "login",
                                                     "password login"));
            !r) {
            return r.error();
        }
        return std::move(*session);
    };
    auto created_op = storage::write<NewSession>(db_, std::move(created_job));
    auto created = co_await std::move(created_op);
    if (!created) {
        counted.failed.inc();
        co_return created.error();
    }
    sessions_.publish_session(*created);
    counted.ok.inc();
    co_return std::move(created->tokens);
}

}  // namespace myelin::service
