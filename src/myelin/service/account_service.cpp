#include "myelin/service/account_service.hpp"

#include "myelin/service/user_ids.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

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
                               SessionService& sessions, UiaSessions& uia, const Config& config,
                               const Clock& clock)
    : db_(db), hasher_(hasher), sessions_(sessions), uia_(uia), config_(config), clock_(clock) {}

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

    if (!request.guest) {
        const boost::json::object* auth = request.auth ? &*request.auth : nullptr;
        if (auto r = uia_.require_dummy(auth, "register"); !r) co_return r.error();
    }

    std::string password_hash;
    if (request.password) {
        auto hash_op = hasher_.hash(*request.password);
        auto hashed = co_await std::move(hash_op);
        if (!hashed) co_return hashed.error();
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
        auto inserted = txn.insert_user(user);
        if (!inserted) return inserted.error();
        if (!*inserted) return user_in_use();
        if (auto r = txn.insert_security_event(
                event(user_id, "", now, "registered", request.guest ? "guest account" : "account"));
            !r) {
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
    if (!created) co_return created.error();
    RegistrationResult out;
    out.user_id = user_id;
    if (*created) {
        sessions_.publish_session(**created);
        out.tokens = std::move((*created)->tokens);
    }
    co_return out;
}

boost::asio::awaitable<Result<IssuedTokens>> AccountService::login(LoginRequest request) {
    if (auto r = check_password_length(request.password); !r) co_return r.error();
    auto user_id = user_id_for_login(request.user, config_.server_name);
    if (!user_id) co_return user_id.error();

    auto found_job = [id = *user_id](storage::ReadTxn& txn) { return txn.find_user(id); };
    auto found_op = storage::read<std::optional<storage::UserRecord>>(db_, std::move(found_job));
    auto found = co_await std::move(found_op);
    if (!found) co_return found.error();
    // An unknown user is checked against a dummy hash: the same work and the same answer.
    // (if/else, not ?:, on purpose: g++ 12 destroys a ?: temporary twice inside coroutines.)
    std::string encoded;
    if (*found) encoded = (*found)->password_hash;
    auto verify_op = hasher_.verify(request.password, encoded);
    auto verified = co_await std::move(verify_op);
    if (!verified) co_return verified.error();
    if (!verified->ok) co_return errors::forbidden("Invalid username or password");
    const auto& user = **found;
    if (user.deactivated) {
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
        storage::DeviceRecord device;
        device.user_id = user.user_id;
        device.device_id = device_id;
        device.display_name = request.initial_device_display_name;
        device.created_ts = now;
        auto is_new = txn.ensure_device(device);
        if (!is_new) return is_new.error();
        if (upgraded_hash) {
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
    if (!created) co_return created.error();
    sessions_.publish_session(*created);
    co_return std::move(created->tokens);
}

}  // namespace myelin::service
