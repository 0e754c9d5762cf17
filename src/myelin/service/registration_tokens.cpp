#include "myelin/service/registration_tokens.hpp"

#include <utility>

#include <sodium.h>

#include "myelin/core/log.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

using storage::RegistrationTokenRecord;

std::string generate_token() {
    static constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string out(RegistrationTokens::kGeneratedLength, ' ');
    for (auto& c : out) {
        c = kAlphabet[randombytes_uniform(static_cast<std::uint32_t>(kAlphabet.size()))];
    }
    return out;
}

// The write job of create(): inserts `record`, drawing a fresh token on the (astronomically
// unlikely) collision of a generated one.
Result<RegistrationTokenRecord> insert_token(storage::WriteTxn& txn, RegistrationTokenRecord record,
                                             bool generated) {
    for (int attempt = 0; attempt < 3; ++attempt) {
        auto inserted = txn.insert_registration_token(record);
        if (!inserted) return inserted.error();
        if (*inserted) {
            record.pending = 0;
            record.completed = 0;
            return record;
        }
        if (!generated) return errors::invalid_param("Registration token already exists");
        record.token = generate_token();
    }
    return errors::internal("Could not generate a unique registration token");
}

}  // namespace

Result<bool> RegistrationTokens::reserve_in(storage::WriteTxn& txn, std::string_view token,
                                            std::int64_t now_ms) {
    auto found = txn.find_registration_token(token);
    if (!found) return found.error();
    if (!*found || !usable(**found, now_ms)) return false;
    auto updated = txn.update_registration_token_counts(token, 1, 0);
    if (!updated) return updated.error();
    return *updated;
}

Result<bool> RegistrationTokens::release_in(storage::WriteTxn& txn, std::string_view token) {
    auto updated = txn.update_registration_token_counts(token, -1, 0);
    if (!updated) return updated.error();
    return *updated;
}

bool RegistrationTokens::well_formed(std::string_view token) {
    if (token.empty() || token.size() > kMaxLength) return false;
    for (char c : token) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool RegistrationTokens::usable(const RegistrationTokenRecord& token, std::int64_t now_ms) {
    if (token.expiry_ts != 0 && now_ms >= token.expiry_ts) return false;
    if (token.uses_allowed && *token.uses_allowed - token.pending - token.completed <= 0) {
        return false;
    }
    return true;
}

boost::asio::awaitable<Result<bool>> RegistrationTokens::validate(std::string token) {
    if (!well_formed(token)) co_return false;
    const std::int64_t now = clock_.now_ms();
    auto job = [token = std::move(token), now](storage::ReadTxn& txn) -> Result<bool> {
        auto found = txn.find_registration_token(token);
        if (!found) return found.error();
        return *found && usable(**found, now);
    };
    auto op = storage::read<bool>(db_, std::move(job));
    auto valid = co_await std::move(op);
    co_return valid;
}

boost::asio::awaitable<Result<bool>> RegistrationTokens::reserve(std::string token) {
    if (!well_formed(token)) co_return false;
    const std::int64_t now = clock_.now_ms();
    auto job = [token = std::move(token), now](storage::WriteTxn& txn) {
        return reserve_in(txn, token, now);
    };
    auto op = storage::write<bool>(db_, std::move(job));
    auto reserved = co_await std::move(op);
    co_return reserved;
}

Result<void> RegistrationTokens::complete_in(storage::WriteTxn& txn, std::string_view token) {
    auto updated = txn.update_registration_token_counts(token, -1, 1);
    if (!updated) return updated.error();
    return {};
}

boost::asio::awaitable<Result<void>> RegistrationTokens::complete(std::string token) {
    auto job = [token = std::move(token)](storage::WriteTxn& txn) -> Result<bool> {
        if (auto r = complete_in(txn, token); !r) return r.error();
        return true;
    };
    auto op = storage::write<bool>(db_, std::move(job));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return Result<void>{};
}

boost::asio::awaitable<Result<void>> RegistrationTokens::release(std::string token) {
    auto job = [token = std::move(token)](storage::WriteTxn& txn) {
        return release_in(txn, token);
    };
    auto op = storage::write<bool>(db_, std::move(job));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return Result<void>{};
}

void RegistrationTokens::release_detached(std::string token) {
    auto failed = std::make_shared<std::optional<Error>>();
    storage::WriteJob job;
    job.run = [token = std::move(token), failed](storage::WriteTxn& txn) -> Result<void> {
        auto r = release_in(txn, token);
        if (!r) {
            *failed = r.error();
            return r.error();
        }
        return {};
    };
    job.on_committed = [failed](const Result<void>& committed) {
        if (*failed) {
            log::app()->warn("could not release a registration token reservation: {}",
                             (*failed)->message);
        } else if (!committed) {
            log::app()->warn("could not release a registration token reservation: {}",
                             committed.error().message);
        }
    };
    db_.post_write(std::move(job));
}

Result<RegistrationTokenRecord> RegistrationTokens::prepare(
    std::optional<std::string> token, std::optional<std::int64_t> uses_allowed,
    std::int64_t expiry_ts) const {
    RegistrationTokenRecord record;
    if (token && !token->empty()) {
        if (!well_formed(*token)) {
            return errors::invalid_param(
                "Registration tokens are 1 to 64 characters of [A-Za-z0-9._~-]");
        }
        record.token = std::move(*token);
    } else {
        record.token = generate_token();
    }
    if (uses_allowed && *uses_allowed < 0) {
        return errors::invalid_param("'uses_allowed' must be a non-negative integer");
    }
    const std::int64_t now = clock_.now_ms();
    if (expiry_ts < 0 || (expiry_ts != 0 && expiry_ts <= now)) {
        return errors::invalid_param("'expiry_time' must be in the future");
    }
    record.uses_allowed = uses_allowed;
    record.expiry_ts = expiry_ts;
    record.created_ts = now;
    return record;
}

boost::asio::awaitable<Result<RegistrationTokenRecord>> RegistrationTokens::create(
    std::optional<std::string> token, std::optional<std::int64_t> uses_allowed,
    std::int64_t expiry_ts) {
    const bool generated = !token || token->empty();
    auto record = prepare(std::move(token), uses_allowed, expiry_ts);
    if (!record) co_return record.error();
    auto job = [record = std::move(*record), generated](storage::WriteTxn& txn) {
        return insert_token(txn, record, generated);
    };
    auto op = storage::write<RegistrationTokenRecord>(db_, std::move(job));
    auto created = co_await std::move(op);
    co_return created;
}

Result<RegistrationTokenRecord> RegistrationTokens::create_sync(
    std::optional<std::string> token, std::optional<std::int64_t> uses_allowed,
    std::int64_t expiry_ts) {
    const bool generated = !token || token->empty();
    auto record = prepare(std::move(token), uses_allowed, expiry_ts);
    if (!record) return record.error();
    return storage::write_sync<RegistrationTokenRecord>(
        db_, [&](storage::WriteTxn& txn) { return insert_token(txn, *record, generated); });
}

boost::asio::awaitable<Result<std::vector<RegistrationTokenRecord>>> RegistrationTokens::list() {
    auto job = [](storage::ReadTxn& txn) { return txn.list_registration_tokens(); };
    auto op = storage::read<std::vector<RegistrationTokenRecord>>(db_, std::move(job));
    auto listed = co_await std::move(op);
    co_return listed;
}

Result<std::vector<RegistrationTokenRecord>> RegistrationTokens::list_sync() {
    return storage::read_sync<std::vector<RegistrationTokenRecord>>(
        db_, [](storage::ReadTxn& txn) { return txn.list_registration_tokens(); });
}

boost::asio::awaitable<Result<bool>> RegistrationTokens::remove(std::string token) {
    auto job = [token = std::move(token)](storage::WriteTxn& txn) {
        return txn.delete_registration_token(token);
    };
    auto op = storage::write<bool>(db_, std::move(job));
    auto removed = co_await std::move(op);
    co_return removed;
}

Result<bool> RegistrationTokens::remove_sync(std::string token) {
    return storage::write_sync<bool>(
        db_, [&](storage::WriteTxn& txn) { return txn.delete_registration_token(token); });
}

}  // namespace myelin::service
