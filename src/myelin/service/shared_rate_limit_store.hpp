#pragma once

// The RateLimitStore for several instances on one database: all instances spend ONE budget per
// bucket, in two ways.
// - Exact classes (everything but the per-IP budget of every request: logins, failed logins,
//   registrations, refreshes, token validity checks) are decided by one atomic statement on
//   the shared bucket, run by this store's own worker thread (take_async; take() waits for it,
//   for callers that may block, e.g. a storage thread). These endpoints cost a hash or a write
//   anyway, and their budgets are small: a slack would be a multiple of them.
// - The per-IP budget of every request is decided at once from this instance's in-memory
//   buckets (no I/O, no waiting on the request path), and a background thread exchanges what
//   was drawn with the shared buckets every `interval` (50 ms by default), folding the other
//   instances' draws back in. What this gives away is bounded and documented (docs/deploy.md):
//   a bucket an instance has not drawn from since its last exchange looks full to it, so a
//   client that spreads its first requests over N instances inside one interval can get up to
//   N bursts once, after which every instance refuses it as one would.
//
// When the database cannot be reached, exact draws fall back to this instance's buckets and
// per-IP draws are kept for the next exchange: requests are never blocked or failed because of
// it.
//
// Thread-safety: take/give_back from any thread; start/stop from one.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "myelin/core/clock.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/storage/rate_limit_exchange.hpp"

namespace myelin::service {

class SharedRateLimitStore final : public RateLimitStore {
public:
    // `exchange` talks to the shared buckets (storage::Database::open_rate_limit_exchange);
    // `clock` must outlive the store.
    // `exact` serves the exact draws (its own connection).
    SharedRateLimitStore(std::unique_ptr<storage::RateLimitExchange> exchange,
                         std::unique_ptr<storage::RateLimitExchange> exact, const Clock& clock,
                         std::chrono::milliseconds interval = std::chrono::milliseconds(50),
                         std::size_t max_buckets = 256 * 1024);
    ~SharedRateLimitStore() override;
    SharedRateLimitStore(const SharedRateLimitStore&) = delete;
    SharedRateLimitStore& operator=(const SharedRateLimitStore&) = delete;

    DrawResult take(LimitClass cls, std::string_view key, const BucketConfig& bucket, double cost,
                    std::int64_t now_ms) override;
    void give_back(LimitClass cls, std::string_view key, const BucketConfig& bucket, double amount,
                   bool end_lockout, std::int64_t now_ms) override;
    bool decides_remotely(LimitClass cls) const override { return cls != LimitClass::kClientIp; }
    void take_async(LimitClass cls, std::string key, const BucketConfig& bucket, double cost,
                    std::int64_t now_ms, DrawCallback done) override;

    // Starts the exchange and exact-draw threads. Call once.
    void start();
    // Sends what is pending one last time, answers queued exact draws, and stops the threads.
    // Idempotent.
    void stop();

    // One exchange now (the thread calls it; tests may too). Returns the buckets exchanged, or
    // the storage error (the draws are kept for the next one).
    Result<std::size_t> exchange_once();

private:
    using BucketId = std::pair<LimitClass, std::string>;
    // A queued exact draw (cost > 0) or give-back (cost < 0, no callback).
    struct ExactJob {
        LimitClass cls;
        std::string key;
        BucketConfig bucket;
        double cost = 0;
        bool end_lockout = false;
        std::int64_t now_ms = 0;
        DrawCallback done;
    };
    void note(LimitClass cls, std::string_view key, std::int64_t consumed_us);
    void enqueue(ExactJob job);
    // Runs one exact job against the shared bucket (or, when it cannot be reached, locally).
    void run_exact(ExactJob& job);
    void run();
    void run_exact_worker();

    std::unique_ptr<storage::RateLimitExchange> exchange_;
    std::unique_ptr<storage::RateLimitExchange> exact_;  // exact worker thread only
    const Clock& clock_;
    const std::chrono::milliseconds interval_;
    InMemoryRateLimitStore local_;
    std::mutex pending_mu_;
    std::map<BucketId, std::int64_t> pending_;  // guarded by pending_mu_: draws not yet sent
    std::mutex exchange_mu_;                    // one exchange at a time
    std::mutex run_mu_;
    std::condition_variable wake_;
    bool stopping_ = false;           // guarded by run_mu_
    std::int64_t last_prune_ms_ = 0;  // exchange thread only
    std::thread thread_;
    std::mutex exact_mu_;
    std::mutex exact_run_mu_;  // one exact job at a time (exact_ is one connection)
    std::condition_variable exact_wake_;
    std::deque<ExactJob> exact_jobs_;  // guarded by exact_mu_
    bool exact_stopping_ = false;      // guarded by exact_mu_
    bool exact_started_ = false;       // guarded by exact_mu_
    bool exact_warned_ = false;        // exact worker thread only
    std::thread exact_thread_;
};

}  // namespace myelin::service
