#include "myelin/auth/password_hasher.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <sodium.h>

#include "myelin/auth/argon2_arena.hpp"
#include "myelin/auth/sodium_init.hpp"
#include "myelin/core/metrics.hpp"

namespace myelin::auth {
namespace {

constexpr std::string_view kArgon2idPrefix = "$argon2id$";
constexpr std::string_view kArgon2iPrefix = "$argon2i$";

// Zeroes the whole buffer of `s` (including bytes past size() that a move or an earlier longer
// value may have left there), then empties it. resize() to the capacity never reallocates.
void wipe(std::string& s) noexcept {
    s.resize(s.capacity());
    sodium_memzero(s.data(), s.size());
    s.clear();
}

// A password held by a queued job; wiped on every path out, including a refused job.
class SecretString {
public:
    explicit SecretString(std::string s) : s_(std::move(s)) {}
    SecretString(SecretString&& other) noexcept = default;
    SecretString& operator=(SecretString&&) = delete;
    SecretString(const SecretString&) = delete;
    SecretString& operator=(const SecretString&) = delete;
    ~SecretString() { wipe(s_); }
    std::string_view view() const { return s_; }
    std::size_t size() const { return s_.size(); }

private:
    std::string s_;
};

Error too_long(std::size_t max) {
    return errors::invalid_param("Password too long (max " + std::to_string(max) + " bytes)");
}

Error overloaded() {
    return errors::unavailable("Password hashing is overloaded; retry shortly", 2);
}

Error shutting_down() { return errors::unavailable("The server is shutting down"); }

// Jobs waiting for a worker (every hasher in the process reports into the one gauge; the
// server has one).
metrics::Gauge& queue_depth_gauge() {
    static metrics::Gauge& g = metrics::gauge("myelin_password_hash_queue_depth",
                                              "Password hashing jobs waiting for a worker");
    return g;
}

// Time a worker spends on one argon2id hash or verification.
metrics::Histogram& hash_seconds() {
    static metrics::Histogram& h = metrics::histogram(
        "myelin_password_hash_seconds", "Time to compute one password hash or verification");
    return h;
}

std::size_t memlimit_bytes(const PasswordParams& p) {
    return static_cast<std::size_t>(p.memory_kib) * 1024U;
}

// Posts `result` to the handler's associated executor and invokes it there (as
// storage/await.hpp does), so the coroutine never resumes on a hashing thread.
template <typename Handler, typename T>
void complete_on_executor(Handler& handler, T result) {
    auto ex = boost::asio::get_associated_executor(handler);
    boost::asio::post(ex, [h = std::move(handler), r = std::move(result)]() mutable {
        std::move(h)(std::move(r));
    });
}

// Runs fn() and turns an escaping exception (bad_alloc) into a 500: this is the worker thread's
// boundary.
template <typename T, typename Fn>
Result<T> run_guarded(Fn& fn) noexcept {
    try {
        return fn();
    } catch (...) {
        return errors::internal("Password hashing failed");
    }
}

}  // namespace

Result<void> PasswordHasher::validate(const PasswordParams& params) {
    if (params.iterations < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
        params.iterations > crypto_pwhash_argon2id_OPSLIMIT_MAX) {
        return errors::internal("Password hashing iterations must be between " +
                                std::to_string(crypto_pwhash_argon2id_OPSLIMIT_MIN) + " and " +
                                std::to_string(crypto_pwhash_argon2id_OPSLIMIT_MAX));
    }
    const std::uint64_t min_kib = (crypto_pwhash_argon2id_MEMLIMIT_MIN + 1023) / 1024;
    const std::uint64_t max_kib = crypto_pwhash_argon2id_MEMLIMIT_MAX / 1024;
    if (params.memory_kib < min_kib || params.memory_kib > max_kib) {
        return errors::internal("Password hashing memory must be between " +
                                std::to_string(min_kib) + " and " + std::to_string(max_kib) +
                                " KiB");
    }
    if (params.max_password_bytes == 0 || params.max_password_bytes > crypto_pwhash_PASSWD_MAX) {
        return errors::internal("Maximum password length must be between 1 and " +
                                std::to_string(crypto_pwhash_PASSWD_MAX) + " bytes");
    }
    return {};
}

PasswordHasher::PasswordHasher(PasswordParams params, unsigned threads, std::size_t max_queue,
                               std::chrono::milliseconds arena_idle_release)
    : params_(params),
      threads_(threads != 0 ? threads : std::max(1U, std::thread::hardware_concurrency())),
      max_queue_(max_queue != 0 ? max_queue : kQueuePerThread * threads_),
      arena_idle_release_(arena_idle_release) {
    ensure_sodium();
    if (auto valid = validate(params_); !valid) {
        throw std::invalid_argument(valid.error().message);
    }
    queue_depth_gauge();  // both series exist (at 0) from start-up
    hash_seconds();
    // The dummy's password is random and discarded: no password can match it.
    std::array<unsigned char, 16> random{};
    randombytes_buf(random.data(), random.size());
    std::array<char, 33> hex{};
    sodium_bin2hex(hex.data(), hex.size(), random.data(), random.size());
    auto dummy = hash_sync(std::string_view(hex.data(), 32));
    sodium_memzero(hex.data(), hex.size());
    if (!dummy) throw std::runtime_error(dummy.error().message);
    dummy_hash_ = std::move(*dummy);

    workers_.reserve(threads_);
    try {
        for (std::size_t i = 0; i < threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
    } catch (...) {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        throw;
    }
}

PasswordHasher::~PasswordHasher() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    // No worker is left, so the queue is ours alone now.
    for (auto& job : queue_) job.abandon();
    queue_.clear();
}

bool PasswordHasher::enqueue(Job& job) {
    {
        std::lock_guard lock(mu_);
        if (stopping_ || queue_.size() + running_ >= threads_ + max_queue_) return false;
        queue_.push_back(std::move(job));
        queue_depth_gauge().set(static_cast<std::int64_t>(queue_.size()));
    }
    cv_.notify_one();
    return true;
}

void PasswordHasher::worker_loop() {
    // This worker's argon2 memory: made at its first job, released after arena_idle_release_
    // without work, wiped and unmapped when the worker ends.
    std::unique_ptr<Argon2Arena> arena;
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mu_);
            auto ready = [this] { return stopping_ || !queue_.empty(); };
            if (arena == nullptr) {
                cv_.wait(lock, ready);
            } else if (!cv_.wait_for(lock, arena_idle_release_, ready)) {
                --arenas_held_;
                lock.unlock();
                arena.reset();
                continue;
            }
            if (stopping_) {
                if (arena != nullptr) --arenas_held_;
                return;
            }
            job = std::move(queue_.front());
            queue_.pop_front();
            queue_depth_gauge().set(static_cast<std::int64_t>(queue_.size()));
            ++running_;
        }
        if (arena == nullptr) {
            // Without an arena (no memory for it) libsodium maps its own region per job.
            arena = Argon2Arena::create(memlimit_bytes(params_));
            if (arena != nullptr) {
                std::lock_guard lock(mu_);
                ++arenas_held_;
            }
        }
        {
            Argon2Arena::Bind bind(arena.get());
            job.run();  // never throws (run_guarded); calls job_finished() before completing
        }
        job = Job{};  // drop the job's captures (and the password) before taking the next one
    }
}

void PasswordHasher::job_finished() {
    std::lock_guard lock(mu_);
    --running_;
}

std::size_t PasswordHasher::queue_depth() const {
    std::lock_guard lock(mu_);
    return queue_.size();
}

std::size_t PasswordHasher::arenas_held() const {
    std::lock_guard lock(mu_);
    return arenas_held_;
}

// GCC 12 miscompiles a lambda with non-trivial captures that appears in the same full
// expression as co_await (the captures are destroyed twice: equeim/tremotesf2#551,
// chriskohlhoff/asio#858). Every such lambda, and the awaitable built from it, is therefore
// a named local before the co_await below and in hash()/verify().
template <typename T, typename Fn>
boost::asio::awaitable<Result<T>> PasswordHasher::submit(Fn fn) {
    auto task = std::make_shared<Fn>(std::move(fn));
    auto initiation = [this, task](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        Job job;
        job.run = [this, task, shared] {
            const auto started = std::chrono::steady_clock::now();
            Result<T> result = run_guarded<T>(*task);
            hash_seconds().observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
            // Free the slot before the caller can resume, so that a caller awaiting jobs one
            // after another is never refused by its own previous job.
            job_finished();
            complete_on_executor(*shared, std::move(result));
        };
        job.abandon = [shared] { complete_on_executor(*shared, Result<T>(shutting_down())); };
        if (!enqueue(job)) complete_on_executor(*shared, Result<T>(overloaded()));
    };
    auto op = boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Result<T>)>(
        std::move(initiation), boost::asio::use_awaitable);
    co_return co_await std::move(op);
}

boost::asio::awaitable<Result<std::string>> PasswordHasher::hash(std::string password) {
    SecretString secret(std::move(password));
    wipe(password);  // a short (SSO) password leaves its bytes behind in the moved-from string
    if (secret.size() > params_.max_password_bytes) {
        co_return too_long(params_.max_password_bytes);
    }
    auto work = [this, secret = std::move(secret)]() { return hash_sync(secret.view()); };
    auto op = submit<std::string>(std::move(work));
    co_return co_await std::move(op);
}

boost::asio::awaitable<Result<VerifyOutcome>> PasswordHasher::verify(std::string password,
                                                                     std::string encoded_hash) {
    SecretString secret(std::move(password));
    wipe(password);
    if (secret.size() > params_.max_password_bytes) {
        co_return too_long(params_.max_password_bytes);
    }
    auto work = [this, secret = std::move(secret), encoded = std::move(encoded_hash)]() {
        return verify_sync(secret.view(), encoded);
    };
    auto op = submit<VerifyOutcome>(std::move(work));
    co_return co_await std::move(op);
}

Result<std::string> PasswordHasher::hash_sync(std::string_view password) const {
    if (password.size() > params_.max_password_bytes) return too_long(params_.max_password_bytes);
    char out[crypto_pwhash_STRBYTES];
    const Argon2Arena::Lend lend(Argon2Arena::thread_arena());
    if (crypto_pwhash_str_alg(out, password.data(), password.size(), params_.iterations,
                              memlimit_bytes(params_), crypto_pwhash_ALG_ARGON2ID13) != 0) {
        // The only failure with validated parameters is being unable to allocate the memory.
        return errors::internal("Password hashing failed (out of memory?)");
    }
    return std::string(out);
}

Result<VerifyOutcome> PasswordHasher::verify_sync(std::string_view password,
                                                  std::string_view encoded_hash) const {
    if (password.size() > params_.max_password_bytes) return too_long(params_.max_password_bytes);
    const Argon2Arena::Lend lend(Argon2Arena::thread_arena());
    if (encoded_hash.empty()) {
        // Unknown user or no password: spend the same work as a real check, then fail.
        const int dummy_rc =
            crypto_pwhash_str_verify(dummy_hash_.c_str(), password.data(), password.size());
        static_cast<void>(dummy_rc);
        return VerifyOutcome{};
    }
    const bool argon2 =
        encoded_hash.starts_with(kArgon2idPrefix) || encoded_hash.starts_with(kArgon2iPrefix);
    if (!argon2 || encoded_hash.size() >= crypto_pwhash_STRBYTES ||
        encoded_hash.find('\0') != std::string_view::npos) {
        return errors::internal("Stored password hash has an unsupported format");
    }
    const std::string encoded(encoded_hash);  // libsodium wants a NUL-terminated string
    VerifyOutcome outcome;
    outcome.ok = crypto_pwhash_str_verify(encoded.c_str(), password.data(), password.size()) == 0;
    // argon2i hashes, and argon2id ones with other costs, are upgraded on a successful login.
    outcome.needs_rehash =
        outcome.ok && crypto_pwhash_argon2id_str_needs_rehash(encoded.c_str(), params_.iterations,
                                                              memlimit_bytes(params_)) != 0;
    return outcome;
}

}  // namespace myelin::auth
