#pragma once

// Argon2id password hashing (libsodium crypto_pwhash_str_alg) on a small, bounded worker pool,
// so that the ~18 ms of CPU and 19 MiB of memory per hash never run on a network thread and a
// login flood sheds load (503) instead of queueing without bound. Used by the account and
// session services; the *_sync forms are for the CLI and tests. Pool jobs report into
// myelin_password_hash_queue_depth (gauge) and myelin_password_hash_seconds (histogram).
// Each worker hashes in its own Argon2Arena (argon2_arena.hpp): one pre-faulted region of the
// configured memory cost, reused by every job, wiped after each, and released after
// arena_idle_release without work, so libsodium does not map and unmap 19 MiB per hash.
//
// Thread-safety: every method is safe to call concurrently from any thread. The PasswordHasher
// must outlive every hash()/verify() coroutine using it; destroying it joins the workers and
// fails jobs still waiting with 503. Shutdown order: destroy it before the io_contexts its
// callers run on (workers post completions to them).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"

namespace myelin::auth {

// Argon2id cost. The defaults are the OWASP minimum (m = 19 MiB, t = 2, p = 1); libsodium always
// uses one lane.
struct PasswordParams {
    std::uint64_t memory_kib = 19456;
    std::uint64_t iterations = 2;
    std::size_t max_password_bytes = 1024;  // longer passwords are refused, never truncated
};

struct VerifyOutcome {
    bool ok = false;            // the password matches
    bool needs_rehash = false;  // ok, but the hash was made with other parameters: rehash it now
};

class PasswordHasher {
public:
    // Jobs allowed to wait per worker when max_queue is 0: about eight hashes' time (under a
    // second at the default cost) is the longest a login waits before it is refused instead.
    static constexpr std::size_t kQueuePerThread = 8;

    // How long a worker keeps its argon2 arena (the memory cost, ~20 MiB at the defaults) with
    // no job before returning it to the system.
    static constexpr std::chrono::milliseconds kArenaIdleRelease{30'000};

    // Starts `threads` workers (0: one per core) and admits at most `max_queue` jobs waiting
    // beyond those running (0: kQueuePerThread per worker). Computes the dummy hash for unknown
    // users with `params` (one hash's worth of CPU, blocking). Throws std::invalid_argument if
    // validate(params) fails, and std::runtime_error if the dummy hash cannot be computed (out of
    // memory): configuration is validated before construction, so either is a start-up failure.
    // A worker maps its arena at its first job and unmaps it after `arena_idle_release` idle.
    PasswordHasher(PasswordParams params, unsigned threads, std::size_t max_queue,
                   std::chrono::milliseconds arena_idle_release = kArenaIdleRelease);
    PasswordHasher(const PasswordHasher&) = delete;
    PasswordHasher& operator=(const PasswordHasher&) = delete;
    // Lets running jobs finish, fails waiting ones with 503, joins the workers. Blocks.
    ~PasswordHasher();

    // Checks `params` against libsodium's argon2id limits; 500 M_UNKNOWN with the reason if
    // out of range. For configuration loading.
    [[nodiscard]] static Result<void> validate(const PasswordParams& params);

    // Hashes `password` on the pool and resumes the caller on its own executor with the encoded
    // string ("$argon2id$v=19$m=...,t=...,p=1$salt$hash"). Errors: 400 M_INVALID_PARAM if longer
    // than max_password_bytes (checked before any work); 503 M_UNKNOWN with Retry-After 2 if the
    // queue is full; 503 if the hasher is being destroyed; 500 if libsodium fails (memory).
    // The password's buffer is wiped once consumed.
    [[nodiscard]] boost::asio::awaitable<Result<std::string>> hash(std::string password);

    // Checks `password` against `encoded_hash` on the pool, resuming on the caller's executor.
    // An empty `encoded_hash` (unknown user, or an account without a password) costs one full
    // verification against a dummy hash and yields ok = false, so unknown users cannot be told
    // apart by timing. needs_rehash is set when ok and the hash is not argon2id with the
    // current parameters. Errors: as hash(), plus 500 M_UNKNOWN if `encoded_hash` is not an
    // argon2 string (e.g. an unmigrated bcrypt hash): an operator problem, not a wrong password.
    [[nodiscard]] boost::asio::awaitable<Result<VerifyOutcome>> verify(std::string password,
                                                                       std::string encoded_hash);

    // Blocking forms of hash() and verify(), run on the calling thread with the same errors
    // (minus the queue ones). For the CLI, start-up and tests; never call on a network thread.
    // They hash in the calling thread's bound Argon2Arena if it has one (the workers do; a
    // benchmark can bind one with Argon2Arena::Bind), else in memory libsodium maps per call.
    [[nodiscard]] Result<std::string> hash_sync(std::string_view password) const;
    [[nodiscard]] Result<VerifyOutcome> verify_sync(std::string_view password,
                                                    std::string_view encoded_hash) const;

    // Jobs accepted but not yet started (for metrics and tests).
    [[nodiscard]] std::size_t queue_depth() const;

    // Workers holding an argon2 arena right now (for tests).
    [[nodiscard]] std::size_t arenas_held() const;

    // Jobs admitted to wait beyond the running ones (max_queue as resolved at construction).
    [[nodiscard]] std::size_t max_queue() const { return max_queue_; }

    [[nodiscard]] const PasswordParams& params() const { return params_; }

private:
    // A queued job: `run` on a worker, or `abandon` (complete with 503) at destruction.
    struct Job {
        std::function<void()> run;
        std::function<void()> abandon;
    };

    // Queues `job` unless that would leave more than max_queue_ jobs waiting beyond the running
    // ones, or the pool is stopping. Returns false (job untouched) when refused.
    bool enqueue(Job& job);
    void worker_loop();
    // Marks a running job done (frees its admission slot). Called by the job itself.
    void job_finished();
    template <typename T, typename Fn>
    boost::asio::awaitable<Result<T>> submit(Fn fn);

    const PasswordParams params_;
    const std::size_t threads_;
    const std::size_t max_queue_;
    const std::chrono::milliseconds arena_idle_release_;
    std::string dummy_hash_;  // set in the constructor, then read-only

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;        // guarded by mu_
    std::size_t running_ = 0;      // jobs taken by a worker and not yet finished; guarded by mu_
    bool stopping_ = false;        // guarded by mu_
    std::size_t arenas_held_ = 0;  // workers holding an arena; guarded by mu_
    std::vector<std::thread> workers_;
};

}  // namespace myelin::auth
