#include "myelin/service/session_service.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "myelin/auth/token_format.hpp"
#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

using storage::RevokeReason;

bool soft_logout_for(RevokeReason reason) {
    return reason == RevokeReason::kRefreshReuse || reason == RevokeReason::kExpired;
}

namespace {

// Deletes a device row together with its end-to-end keys, and records the change of the user's
// device list (a later /sync tells the users who share rooms with them).
Result<void> delete_device_with_keys(storage::WriteTxn& txn, std::string_view user_id,
                                     std::string_view device_id) {
    if (auto r = txn.delete_device(user_id, device_id); !r) return r.error();
    if (auto r = txn.delete_device_e2e_keys(user_id, device_id); !r) return r.error();
    auto pos = txn.record_device_list_change(user_id, device_id);
    if (!pos) return pos.error();
    return {};
}

// myelin_refreshes_total{outcome}, registered once.
struct RefreshMetrics {
    static constexpr std::string_view kName = "myelin_refreshes_total";
    static constexpr std::string_view kHelp = "Refresh token exchanges, both endpoints";
    metrics::Counter& ok = metrics::counter(kName, kHelp, {{"outcome", "ok"}});
    metrics::Counter& idempotent_retry =
        metrics::counter(kName, kHelp, {{"outcome", "idempotent_retry"}});
    metrics::Counter& reuse_detected =
        metrics::counter(kName, kHelp, {{"outcome", "reuse_detected"}});
    metrics::Counter& failed = metrics::counter(kName, kHelp, {{"outcome", "failed"}});
};

RefreshMetrics& refresh_metrics() {
    static RefreshMetrics m;
    return m;
}

}  // namespace

struct SessionService::RefreshResult {
    enum class Kind { kRotated, kRetried, kReuse, kUnknown, kEnded };
    Kind kind = Kind::kUnknown;
    IssuedTokens tokens;
    storage::SessionRecord session;
    storage::AccessTokenRecord access;
    bool soft_logout = false;
    bool revoked_now = false;
    RevokeReason reason = RevokeReason::kNone;
    std::string message;
};

SessionService::SessionService(storage::Database& db, const auth::TokenHasher& hasher,
                               const auth::SuccessorSealer& sealer, auth::TokenCache& cache,
                               const Clock& clock, TokensConfig config)
    : db_(db), hasher_(hasher), sealer_(sealer), cache_(cache), clock_(clock), config_(config) {
    refresh_metrics();  // every outcome's series exists from start-up, at zero
}

std::int64_t SessionService::access_expiry(std::int64_t now, bool refreshable,
                                           std::int64_t ends_ts) const {
    auto lifetime =
        refreshable ? config_.access_token_lifetime : config_.nonrefreshable_access_token_lifetime;
    std::int64_t expires = lifetime.count() > 0 ? now + lifetime.count() : 0;
    if (ends_ts > 0) expires = expires == 0 ? ends_ts : std::min(expires, ends_ts);
    return expires;
}

namespace {

std::int64_t refresh_expiry(std::int64_t now, const TokensConfig& config, std::int64_t ends_ts) {
    std::int64_t idle = config.session_idle_timeout.count();
    std::int64_t expires = idle > 0 ? now + idle : 0;
    if (ends_ts > 0) expires = expires == 0 ? ends_ts : std::min(expires, ends_ts);
    return expires;
}

std::optional<std::int64_t> expires_in(std::int64_t expires_ts, std::int64_t now) {
    if (expires_ts == 0) return std::nullopt;
    return std::max<std::int64_t>(0, expires_ts - now);
}

}  // namespace

Result<NewSession> SessionService::create_session(storage::WriteTxn& txn,
                                                  const std::string& user_id,
                                                  const std::string& device_id, bool refreshable,
                                                  bool is_guest) {
    const std::int64_t now = clock_.now_ms();
    NewSession out;
    auto live = txn.live_sessions(user_id, std::string_view(device_id));
    if (!live) return live.error();
    for (const auto& old : *live) {
        if (auto r = txn.revoke_session(old.session_id, now, RevokeReason::kReplaced); !r) {
            return r.error();
        }
        if (auto r = txn.delete_session_tokens(old.session_id); !r) return r.error();
        out.replaced_sessions.push_back(old.session_id);
    }

    storage::SessionRecord session;
    session.user_id = user_id;
    session.device_id = device_id;
    session.refreshable = refreshable;
    session.is_guest = is_guest;
    session.created_ts = now;
    session.ends_ts = config_.session_absolute_lifetime.count() > 0
                          ? now + config_.session_absolute_lifetime.count()
                          : 0;
    auto id = txn.insert_session(session);
    if (!id) return id.error();
    session.session_id = *id;

    out.tokens.user_id = user_id;
    out.tokens.device_id = device_id;
    out.tokens.access_token = auth::generate_token(auth::TokenKind::kAccess);
    out.access.token_hash = hasher_.hash(out.tokens.access_token);
    out.access.session_id = session.session_id;
    out.access.generation = 0;
    out.access.issued_ts = now;
    out.access.expires_ts = access_expiry(now, refreshable, session.ends_ts);
    if (auto r = txn.insert_access_token(out.access); !r) return r.error();
    out.tokens.expires_in_ms = expires_in(out.access.expires_ts, now);

    if (refreshable) {
        std::string refresh = auth::generate_token(auth::TokenKind::kRefresh);
        storage::RefreshTokenRecord rt;
        rt.token_hash = hasher_.hash(refresh);
        rt.session_id = session.session_id;
        rt.generation = 0;
        rt.issued_ts = now;
        rt.expires_ts = refresh_expiry(now, config_, session.ends_ts);
        if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
        out.tokens.refresh_token = std::move(refresh);
    }
    out.session = std::move(session);
    return out;
}

void SessionService::publish_session(const NewSession& created) {
    for (auto id : created.replaced_sessions) cache_.revoke_session(id, RevokeReason::kReplaced);
    auth::CachedAccessToken token;
    token.session = cache_.session_for(created.session);
    token.generation = created.access.generation;
    token.expires_ts = created.access.expires_ts;
    cache_.insert(created.access.token_hash, std::move(token));
}

std::variant<Identity, Error, AuthNeedsStorage> SessionService::judge(
    const auth::CachedAccessToken& token, const storage::TokenHash& hash,
    bool allow_expired) const {
    const auto& s = token.session;
    int reason = s->revoked_reason.load(std::memory_order_acquire);
    if (reason != 0) {
        return errors::unknown_token(soft_logout_for(static_cast<RevokeReason>(reason)));
    }
    const std::int64_t now = clock_.now_ms();
    if (s->ends_ts > 0 && now >= s->ends_ts && !allow_expired) {
        return errors::unknown_token(true, "Session has ended; sign in again");
    }
    const std::int64_t used = s->used_generation.load(std::memory_order_acquire);
    if (token.generation < used) {
        return errors::unknown_token(true, "Access token was replaced by a refresh");
    }
    if (token.expires_ts > 0 && now >= token.expires_ts && !allow_expired) {
        return errors::unknown_token(true, "Access token has expired");
    }
    if (token.generation > used) return AuthNeedsStorage{};
    return Identity{s, token.generation, hash};
}

std::variant<Identity, Error, AuthNeedsStorage> SessionService::authenticate_now(
    std::string_view token, bool allow_expired) {
    auto kind = auth::parse_token(token);
    if (!kind || *kind != auth::TokenKind::kAccess) return errors::unknown_token(false);
    auto hash = hasher_.hash(token);
    auto cached = cache_.find(hash);
    if (!cached) return AuthNeedsStorage{};
    return judge(*cached, hash, allow_expired);
}

boost::asio::awaitable<Result<Identity>> SessionService::authenticate(std::string token,
                                                                      bool allow_expired) {
    auto kind = auth::parse_token(token);
    if (!kind || *kind != auth::TokenKind::kAccess) co_return errors::unknown_token(false);
    const auto hash = hasher_.hash(token);

    auto cached = cache_.find(hash);
    if (!cached) {
        const auto epoch = cache_.revocation_epoch();
        auto lookup_job = [hash](storage::ReadTxn& txn) { return txn.find_access_token(hash); };
        auto lookup_op =
            storage::read<std::optional<storage::AccessTokenLookup>>(db_, std::move(lookup_job));
        auto lookup = co_await std::move(lookup_op);
        if (!lookup) co_return lookup.error();
        if (!*lookup) co_return errors::unknown_token(false);
        const auto& found = **lookup;
        auth::CachedAccessToken entry;
        entry.session = cache_.session_for(found.session);
        entry.generation = found.token.generation;
        entry.expires_ts = found.token.expires_ts;
        if (found.session.revoked_ts == 0) cache_.insert(hash, entry, epoch);
        cached = entry;
    }

    auto verdict = judge(*cached, hash, allow_expired);
    if (auto* id = std::get_if<Identity>(&verdict)) co_return *id;
    if (auto* err = std::get_if<Error>(&verdict)) co_return *err;

    // First use of a new generation: record it durably, which ends the previous access token
    // and closes the old refresh token's retry window.
    const std::int64_t session_id = cached->session->session_id;
    const std::int64_t generation = cached->generation;
    auto advanced_job = [session_id, generation](storage::WriteTxn& txn) -> Result<std::int64_t> {
        auto s = txn.find_session(session_id);
        if (!s) return s.error();
        if (!*s) return errors::unknown_token(false);
        if ((*s)->revoked_ts != 0) {
            return errors::unknown_token(soft_logout_for((*s)->revoked_reason));
        }
        if ((*s)->used_generation >= generation) return (*s)->current_generation;
        auto ok = txn.update_session_generations(session_id, (*s)->current_generation,
                                                 (*s)->current_generation, generation);
        if (!ok) return ok.error();
        if (!*ok) return errors::unavailable("Concurrent session update; retry", 1);
        if (auto w = txn.wipe_sealed_successors(session_id); !w) return w.error();
        return (*s)->current_generation;
    };
    auto advanced_op = storage::write<std::int64_t>(db_, std::move(advanced_job));
    auto advanced = co_await std::move(advanced_op);
    if (!advanced) {
        if (advanced.error().status == 401) {
            auto soft = advanced.error().extra.find("soft_logout");
            bool is_soft = soft != advanced.error().extra.end() && soft->value().is_bool() &&
                           soft->value().as_bool();
            cache_.revoke_session(session_id,
                                  is_soft ? RevokeReason::kRefreshReuse : RevokeReason::kLogout);
        }
        co_return advanced.error();
    }
    cache_.advance_session(session_id, *advanced, generation);
    co_return Identity{cached->session, generation, hash};
}

Result<SessionService::RefreshResult> SessionService::refresh_in_txn(
    storage::WriteTxn& txn, const std::string& token, const storage::TokenHash& hash,
    RefreshFlavor flavor, std::optional<Result<void>>& rate_decision) {
    using Kind = RefreshResult::Kind;
    RefreshResult out;
    const std::int64_t now = clock_.now_ms();
    auto lookup = txn.find_refresh_token(hash);
    if (!lookup) return lookup.error();
    if (!*lookup) {
        out.kind = Kind::kUnknown;
        out.message = "Unknown refresh token";
        return out;
    }
    const auto& s = (*lookup)->session;
    const auto& t = (*lookup)->token;
    out.session = s;
    // Per device on both endpoints; only now is the device known. A refused refresh has
    // written nothing, so it changes nothing (the same token works once the budget refills).
    if (limiter_ && !limiter_->is_exempt(s.user_id)) {
        if (!rate_decision) {
            rate_decision = limiter_->check(LimitClass::kRefresh, s.user_id + "|" + s.device_id);
        }
        if (!*rate_decision) return rate_decision->error();
    }
    if (s.revoked_ts != 0) {
        out.kind = Kind::kEnded;
        out.soft_logout = soft_logout_for(s.revoked_reason);
        out.reason = s.revoked_reason;
        out.message = "Session has ended";
        return out;
    }

    const std::int64_t g = t.generation;
    const std::int64_t current = s.current_generation;
    const std::int64_t used = s.used_generation;
    auto end_session = [&](RevokeReason reason, std::string message) -> Result<RefreshResult> {
        if (auto r = txn.revoke_session(s.session_id, now, reason); !r) return r.error();
        out.kind = Kind::kEnded;
        out.soft_logout = soft_logout_for(reason);
        out.revoked_now = true;
        out.reason = reason;
        out.message = std::move(message);
        return out;
    };

    if (g == current) {
        if ((s.ends_ts > 0 && now >= s.ends_ts) || (t.expires_ts > 0 && now >= t.expires_ts)) {
            return end_session(RevokeReason::kExpired, "Session has expired");
        }
        const std::int64_t next = g + 1;
        // The legacy endpoint has no retry window: the successor counts as used at once, which
        // also ends the old access token now.
        const std::int64_t new_used = flavor == RefreshFlavor::kLegacy ? next : g;
        IssuedTokens tokens;
        tokens.user_id = s.user_id;
        tokens.device_id = s.device_id;
        tokens.access_token = auth::generate_token(auth::TokenKind::kAccess);
        std::string refresh = auth::generate_token(auth::TokenKind::kRefresh);

        storage::AccessTokenRecord at;
        at.token_hash = hasher_.hash(tokens.access_token);
        at.session_id = s.session_id;
        at.generation = next;
        at.issued_ts = now;
        at.expires_ts = access_expiry(now, true, s.ends_ts);
        storage::RefreshTokenRecord rt;
        rt.token_hash = hasher_.hash(refresh);
        rt.session_id = s.session_id;
        rt.generation = next;
        rt.issued_ts = now;
        rt.expires_ts = refresh_expiry(now, config_, s.ends_ts);

        // Six calls (on PostgreSQL six round trips), not WriteTxn::rotate_session's one
        // statement: measured durable on PostgreSQL, the one statement was slower at 64 clients
        // (and at 8 in one of two runs) despite losing fewer serialization races (bench/README.md,
        // "PostgreSQL rotation: one statement against six").
        auto cas = txn.update_session_generations(s.session_id, current, next, new_used);
        if (!cas) return cas.error();
        if (!*cas) return errors::unavailable("Concurrent refresh; retry", 1);
        if (auto r = txn.insert_access_token(at); !r) return r.error();
        if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
        if (auto r = txn.wipe_sealed_successors(s.session_id); !r) return r.error();
        if (flavor == RefreshFlavor::kModern) {
            auth::TokenPair pair{tokens.access_token, refresh, at.expires_ts};
            if (auto r = txn.set_sealed_successor(hash, sealer_.seal(token, hash, pair)); !r) {
                return r.error();
            }
        }
        tokens.refresh_token = std::move(refresh);
        tokens.expires_in_ms = expires_in(at.expires_ts, now);
        out.kind = Kind::kRotated;
        out.tokens = std::move(tokens);
        out.access = at;
        out.session.current_generation = next;
        out.session.used_generation = new_used;
        return out;
    }

    if (flavor == RefreshFlavor::kModern && g + 1 == current && used <= g) {
        // A retry before the successor was used: the same pair again.
        auto pair = sealer_.unseal(token, hash, t.sealed_successor);
        if (!pair) {
            out.kind = Kind::kEnded;
            out.soft_logout = true;
            out.message = "Refresh token can no longer be used";
            return out;
        }
        out.kind = Kind::kRetried;
        out.tokens.user_id = s.user_id;
        out.tokens.device_id = s.device_id;
        out.tokens.access_token = std::move(pair->access_token);
        out.tokens.refresh_token = std::move(pair->refresh_token);
        out.tokens.expires_in_ms = expires_in(pair->access_expires_ts, now);
        return out;
    }

    // The successor was already used (or, on the legacy endpoint, the token was spent): this
    // refresh token is in two hands. End the session but keep the device.
    storage::SecurityEventRecord event;
    event.user_id = s.user_id;
    event.device_id = s.device_id;
    event.ts = now;
    event.kind = "refresh_reuse_detected";
    event.detail = "a rotated-out refresh token (generation " + std::to_string(g) + ", current " +
                   std::to_string(current) + ") was presented" +
                   (config_.refresh_reuse_revokes_session ? "; session revoked" : "");
    if (auto r = txn.insert_security_event(event); !r) return r.error();
    out.kind = Kind::kReuse;
    out.message = "Refresh token has already been used";
    if (config_.refresh_reuse_revokes_session) {
        if (auto r = txn.revoke_session(s.session_id, now, RevokeReason::kRefreshReuse); !r) {
            return r.error();
        }
        out.revoked_now = true;
        out.reason = RevokeReason::kRefreshReuse;
        out.soft_logout = true;
    }
    return out;
}

boost::asio::awaitable<Result<IssuedTokens>> SessionService::refresh(std::string refresh_token,
                                                                     RefreshFlavor flavor) {
    auto fail = [flavor](std::string message, bool soft) -> Error {
        if (flavor == RefreshFlavor::kLegacy) return errors::forbidden(std::move(message));
        return errors::unknown_token(soft, std::move(message));
    };
    auto& counted = refresh_metrics();
    auto kind = auth::parse_token(refresh_token);
    if (!kind || *kind != auth::TokenKind::kRefresh) {
        counted.failed.inc();
        co_return fail("Unknown refresh token", false);
    }
    const auto hash = hasher_.hash(refresh_token);
    auto result_job = [this, token = std::move(refresh_token), hash, flavor,
                       rate_decision =
                           std::optional<Result<void>>()](storage::WriteTxn& txn) mutable {
        return refresh_in_txn(txn, token, hash, flavor, rate_decision);
    };
    auto result_op = storage::write<RefreshResult>(db_, std::move(result_job));
    auto result = co_await std::move(result_op);
    if (!result) {
        counted.failed.inc();
        co_return result.error();
    }
    auto& r = *result;
    using Kind = RefreshResult::Kind;
    if (r.revoked_now) cache_.revoke_session(r.session.session_id, r.reason);
    switch (r.kind) {
        case Kind::kRotated: {
            auth::CachedAccessToken entry;
            entry.session = cache_.session_for(r.session);
            entry.generation = r.access.generation;
            entry.expires_ts = r.access.expires_ts;
            cache_.insert(r.access.token_hash, std::move(entry));
            cache_.advance_session(r.session.session_id, r.session.current_generation,
                                   r.session.used_generation);
            counted.ok.inc();
            co_return std::move(r.tokens);
        }
        case Kind::kRetried:
            counted.idempotent_retry.inc();
            co_return std::move(r.tokens);
        case Kind::kReuse:
            counted.reuse_detected.inc();
            log::app()->warn("refresh token reuse detected: user={} device={} session={}{}",
                             r.session.user_id, r.session.device_id, r.session.session_id,
                             r.revoked_now ? " (session revoked)" : "");
            co_return fail(r.message, r.soft_logout);
        case Kind::kUnknown:
        case Kind::kEnded:
            counted.failed.inc();
            co_return fail(r.message, r.soft_logout);
    }
    counted.failed.inc();
    co_return fail("Unknown refresh token", false);
}

boost::asio::awaitable<Result<void>> SessionService::logout(const Identity& identity) {
    const std::int64_t session_id = identity.session->session_id;
    const std::string user_id = identity.user_id();
    const std::string device_id = identity.device_id();
    const std::int64_t now = clock_.now_ms();
    auto done_job = [=](storage::WriteTxn& txn) -> Result<std::vector<std::int64_t>> {
        std::vector<std::int64_t> ended{session_id};
        auto live = txn.live_sessions(user_id, std::string_view(device_id));
        if (!live) return live.error();
        for (const auto& s : *live) {
            if (s.session_id != session_id) ended.push_back(s.session_id);
        }
        for (auto id : ended) {
            if (auto r = txn.revoke_session(id, now, RevokeReason::kLogout); !r) {
                return r.error();
            }
            if (auto r = txn.delete_session_tokens(id); !r) return r.error();
        }
        if (auto r = delete_device_with_keys(txn, user_id, device_id); !r) return r.error();
        return ended;
    };
    auto done_op = storage::write<std::vector<std::int64_t>>(db_, std::move(done_job), {},
                                                             storage::kDeviceListsCounter);
    auto done = co_await std::move(done_op);
    if (!done) co_return done.error();
    for (auto id : *done) cache_.revoke_session(id, RevokeReason::kLogout);
    co_return Result<void>{};
}

boost::asio::awaitable<Result<void>> SessionService::logout_all(const std::string& user_id) {
    const std::int64_t now = clock_.now_ms();
    auto done_job = [=](storage::WriteTxn& txn) -> Result<std::vector<std::int64_t>> {
        std::vector<std::int64_t> ended;
        auto live = txn.live_sessions(user_id, std::nullopt);
        if (!live) return live.error();
        for (const auto& s : *live) {
            if (auto r = txn.revoke_session(s.session_id, now, RevokeReason::kLogout); !r) {
                return r.error();
            }
            if (auto r = txn.delete_session_tokens(s.session_id); !r) return r.error();
            ended.push_back(s.session_id);
        }
        auto devices = txn.list_devices(user_id);
        if (!devices) return devices.error();
        for (const auto& d : *devices) {
            if (auto r = delete_device_with_keys(txn, user_id, d.device_id); !r) return r.error();
        }
        return ended;
    };
    auto done_op = storage::write<std::vector<std::int64_t>>(db_, std::move(done_job), {},
                                                             storage::kDeviceListsCounter);
    auto done = co_await std::move(done_op);
    if (!done) co_return done.error();
    for (auto id : *done) cache_.revoke_session(id, RevokeReason::kLogout);
    co_return Result<void>{};
}

namespace {

const char* revoke_reason_name(RevokeReason reason) {
    switch (reason) {
        case RevokeReason::kNone:
            return "none";
        case RevokeReason::kLogout:
            return "logout";
        case RevokeReason::kReplaced:
            return "replaced";
        case RevokeReason::kRefreshReuse:
            return "refresh_reuse";
        case RevokeReason::kAdmin:
            return "admin";
        case RevokeReason::kExpired:
            return "expired";
        case RevokeReason::kPasswordChange:
            return "password_change";
        case RevokeReason::kDeactivated:
            return "deactivated";
    }
    return "unknown";
}

}  // namespace

boost::asio::awaitable<Result<std::size_t>> SessionService::end_sessions(
    std::string user_id, std::optional<std::string> device_id,
    std::optional<std::int64_t> keep_session_id, RevokeReason reason, bool delete_devices) {
    const std::int64_t now = clock_.now_ms();
    auto done_job = [user_id = std::move(user_id), device_id = std::move(device_id),
                     keep_session_id, reason, delete_devices,
                     now](storage::WriteTxn& txn) -> Result<std::vector<std::int64_t>> {
        std::optional<std::string_view> only_device;
        if (device_id) only_device = std::string_view(*device_id);
        // The device of the kept session survives a user-wide device deletion.
        std::optional<std::string> kept_device;
        if (keep_session_id) {
            auto kept = txn.find_session(*keep_session_id);
            if (!kept) return kept.error();
            if (*kept && (*kept)->user_id == user_id) kept_device = (*kept)->device_id;
        }
        std::vector<std::int64_t> ended;
        auto live = txn.live_sessions(user_id, only_device);
        if (!live) return live.error();
        for (const auto& s : *live) {
            if (keep_session_id && s.session_id == *keep_session_id) continue;
            if (auto r = txn.revoke_session(s.session_id, now, reason); !r) return r.error();
            if (auto r = txn.delete_session_tokens(s.session_id); !r) return r.error();
            ended.push_back(s.session_id);
        }
        if (delete_devices) {
            if (device_id) {
                if (!(kept_device && *kept_device == *device_id)) {
                    if (auto r = delete_device_with_keys(txn, user_id, *device_id); !r)
                        return r.error();
                }
            } else {
                auto devices = txn.list_devices(user_id);
                if (!devices) return devices.error();
                for (const auto& d : *devices) {
                    if (kept_device && d.device_id == *kept_device) continue;
                    if (auto r = delete_device_with_keys(txn, user_id, d.device_id); !r)
                        return r.error();
                }
            }
        }
        if (!ended.empty()) {
            storage::SecurityEventRecord event;
            event.user_id = user_id;
            if (device_id) event.device_id = *device_id;
            event.ts = now;
            event.kind = "sessions_revoked";
            event.detail = std::to_string(ended.size()) + " session(s) ended (" +
                           revoke_reason_name(reason) + ")";
            if (auto r = txn.insert_security_event(event); !r) return r.error();
        }
        return ended;
    };
    storage::SharedCounters counters = 0;
    if (delete_devices) counters = storage::kDeviceListsCounter;
    auto done_op =
        storage::write<std::vector<std::int64_t>>(db_, std::move(done_job), {}, counters);
    auto done = co_await std::move(done_op);
    if (!done) co_return done.error();
    for (auto id : *done) cache_.revoke_session(id, reason);
    co_return done->size();
}

namespace {

// What end_device_sessions' write job did.
struct DeviceDeletion {
    std::size_t devices = 0;
    std::vector<std::int64_t> sessions;
};

}  // namespace

boost::asio::awaitable<Result<std::size_t>> SessionService::end_device_sessions(
    std::string user_id, std::vector<std::string> device_ids) {
    const std::int64_t now = clock_.now_ms();
    auto done_job = [user_id = std::move(user_id), ids = std::move(device_ids),
                     now](storage::WriteTxn& txn) -> Result<DeviceDeletion> {
        // The work is bounded by the user's own devices and sessions (two reads), not by the
        // list the client sent.
        std::unordered_set<std::string_view> wanted(ids.begin(), ids.end());
        DeviceDeletion out;
        auto live = txn.live_sessions(user_id, std::nullopt);
        if (!live) return live.error();
        std::unordered_map<std::string_view, std::size_t> ended_per_device;
        for (const auto& s : *live) {
            if (!wanted.contains(s.device_id)) continue;
            if (auto r = txn.revoke_session(s.session_id, now, RevokeReason::kLogout); !r) {
                return r.error();
            }
            if (auto r = txn.delete_session_tokens(s.session_id); !r) return r.error();
            out.sessions.push_back(s.session_id);
            ++ended_per_device[s.device_id];
        }
        auto devices = txn.list_devices(user_id);
        if (!devices) return devices.error();
        for (const auto& d : *devices) {
            if (!wanted.contains(d.device_id)) continue;
            if (auto r = delete_device_with_keys(txn, user_id, d.device_id); !r) return r.error();
            storage::SecurityEventRecord event;
            event.user_id = user_id;
            event.device_id = d.device_id;
            event.ts = now;
            event.kind = "device_deleted";
            auto ended = ended_per_device.find(d.device_id);
            event.detail = "device deleted; " +
                           std::to_string(ended == ended_per_device.end() ? 0 : ended->second) +
                           " session(s) ended";
            if (auto r = txn.insert_security_event(event); !r) return r.error();
            ++out.devices;
        }
        return out;
    };
    auto done_op =
        storage::write<DeviceDeletion>(db_, std::move(done_job), {}, storage::kDeviceListsCounter);
    auto done = co_await std::move(done_op);
    if (!done) co_return done.error();
    for (auto id : done->sessions) cache_.revoke_session(id, RevokeReason::kLogout);
    co_return done->devices;
}

Result<std::size_t> SessionService::warm_cache() {
    return storage::read_sync<std::size_t>(
        db_, [this](storage::ReadTxn& txn) -> Result<std::size_t> {
            std::size_t n = 0;
            auto r = txn.for_each_live_access_token([&](const storage::AccessTokenLookup& found) {
                auth::CachedAccessToken entry;
                entry.session = cache_.session_for(found.session);
                entry.generation = found.token.generation;
                entry.expires_ts = found.token.expires_ts;
                cache_.insert(found.token.token_hash, std::move(entry));
                ++n;
            });
            if (!r) return r.error();
            return n;
        });
}

}  // namespace myelin::service
