#include "myelin/service/shared_rate_limit_store.hpp"

#include <algorithm>
#include <cmath>
#include <future>
#include <vector>

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"

namespace myelin::service {
namespace {

constexpr std::int64_t kPruneEveryMs = 60'000;
constexpr int kPruneBatch = 10'000;

std::int64_t gcra_us(const BucketConfig& bucket, double tokens) {
    return std::llround(tokens * 1e6 / bucket.per_second);
}

metrics::Counter& exchange_failures() {
    static metrics::Counter& c = metrics::counter(
        "myelin_rate_limit_exchange_failures_total",
        "Exchanges with the shared rate-limit buckets that failed (draws kept for the next).");
    return c;
}

}  // namespace

SharedRateLimitStore::SharedRateLimitStore(std::unique_ptr<storage::RateLimitExchange> exchange,
                                           std::unique_ptr<storage::RateLimitExchange> exact,
                                           const Clock& clock, std::chrono::milliseconds interval,
                                           std::size_t max_buckets)
    : exchange_(std::move(exchange)),
      exact_(std::move(exact)),
      clock_(clock),
      interval_(interval),
      local_(max_buckets) {
    (void)exchange_failures();  // present at zero from start-up
}

SharedRateLimitStore::~SharedRateLimitStore() { stop(); }

void SharedRateLimitStore::note(LimitClass cls, std::string_view key, std::int64_t consumed_us) {
    std::lock_guard lock(pending_mu_);
    pending_[BucketId(cls, std::string(key))] += consumed_us;
}

DrawResult SharedRateLimitStore::take(LimitClass cls, std::string_view key,
                                      const BucketConfig& bucket, double cost,
                                      std::int64_t now_ms) {
    if (decides_remotely(cls)) {
        // Only callers that may wait get here (take_async is for network threads).
        std::promise<DrawResult> answer;
        auto answered = answer.get_future();
        take_async(cls, std::string(key), bucket, cost, now_ms,
                   [&answer](DrawResult r) { answer.set_value(r); });
        return answered.get();
    }
    DrawResult r = local_.take(cls, key, bucket, cost, now_ms);
    if (r.granted) note(cls, key, gcra_us(bucket, cost));
    return r;
}

void SharedRateLimitStore::give_back(LimitClass cls, std::string_view key,
                                     const BucketConfig& bucket, double amount, bool end_lockout,
                                     std::int64_t now_ms) {
    if (decides_remotely(cls)) {
        enqueue(ExactJob{cls, std::string(key), bucket, -amount, end_lockout, now_ms, nullptr});
        return;
    }
    local_.give_back(cls, key, bucket, amount, end_lockout, now_ms);
    note(cls, key, -gcra_us(bucket, amount));
}

void SharedRateLimitStore::take_async(LimitClass cls, std::string key, const BucketConfig& bucket,
                                      double cost, std::int64_t now_ms, DrawCallback done) {
    if (!decides_remotely(cls)) {
        done(take(cls, key, bucket, cost, now_ms));
        return;
    }
    enqueue(ExactJob{cls, std::move(key), bucket, cost, false, now_ms, std::move(done)});
}

void SharedRateLimitStore::enqueue(ExactJob job) {
    {
        std::lock_guard lock(exact_mu_);
        if (exact_started_ && !exact_stopping_) {
            exact_jobs_.push_back(std::move(job));
            exact_wake_.notify_one();
            return;
        }
    }
    // Not running (before start, after stop; tests): decide on the caller's thread.
    std::lock_guard exclusive(exact_run_mu_);
    run_exact(job);
}

void SharedRateLimitStore::run_exact(ExactJob& job) {
    const std::int64_t now_us = job.now_ms * 1000;
    const std::int64_t per_token_us = gcra_us(job.bucket, 1.0);
    const std::int64_t burst_us = gcra_us(job.bucket, job.bucket.burst);
    const auto cls = static_cast<int>(job.cls);
    if (job.cost < 0) {
        if (auto r = exact_->put_back(cls, job.key, gcra_us(job.bucket, -job.cost), now_us); !r) {
            exchange_failures().inc();
        }
        local_.give_back(job.cls, job.key, job.bucket, -job.cost, job.end_lockout, job.now_ms);
        return;
    }
    const std::int64_t cost_us = gcra_us(job.bucket, job.cost);
    DrawResult out;
    if (cost_us > burst_us) {
        out.retry_after_ms = std::max<std::int64_t>(1, (cost_us - burst_us + 999) / 1000);
        job.done(out);
        return;
    }
    auto drawn = exact_->draw(cls, job.key, cost_us, burst_us, now_us);
    if (!drawn) {
        exchange_failures().inc();
        if (!exact_warned_) {
            log::app()->warn(
                "rate limits: cannot reach the shared buckets ({}); deciding logins, "
                "registrations and refreshes from this instance's buckets until it "
                "can",
                drawn.error().message);
        }
        exact_warned_ = true;
        job.done(local_.take(job.cls, job.key, job.bucket, job.cost, job.now_ms));
        return;
    }
    exact_warned_ = false;
    out.granted = drawn->granted;
    if (drawn->granted) {
        // This draw crossed into "less than one token left": the start of a lockout.
        const std::int64_t ahead = drawn->tat_us - now_us;
        out.exhausted_now =
            ahead > burst_us - per_token_us && ahead - cost_us <= burst_us - per_token_us;
    } else if (drawn->tat_us == 0) {
        out.retry_after_ms = std::max<std::int64_t>(1, (cost_us + 999) / 1000);
    } else {
        const std::int64_t over = std::max(drawn->tat_us, now_us) + cost_us - now_us - burst_us;
        out.retry_after_ms = std::max<std::int64_t>(1, (over + 999) / 1000);
    }
    job.done(out);
}

void SharedRateLimitStore::run_exact_worker() {
    for (;;) {
        ExactJob job;
        {
            std::unique_lock lock(exact_mu_);
            exact_wake_.wait(lock, [this] { return exact_stopping_ || !exact_jobs_.empty(); });
            if (exact_jobs_.empty()) return;  // stopping, and every queued job answered
            job = std::move(exact_jobs_.front());
            exact_jobs_.pop_front();
        }
        std::lock_guard exclusive(exact_run_mu_);
        run_exact(job);
    }
}

Result<std::size_t> SharedRateLimitStore::exchange_once() {
    std::lock_guard exchanging(exchange_mu_);
    std::map<BucketId, std::int64_t> sending;
    {
        std::lock_guard lock(pending_mu_);
        sending.swap(pending_);
    }
    const std::int64_t now_ms = clock_.now_ms();
    if (now_ms - last_prune_ms_ >= kPruneEveryMs) {
        last_prune_ms_ = now_ms;
        if (auto pruned = exchange_->prune(now_ms * 1000, kPruneBatch); !pruned) {
            exchange_failures().inc();
        }
    }
    if (sending.empty()) return std::size_t{0};
    std::vector<storage::BucketDraw> draws;
    draws.reserve(sending.size());
    for (const auto& [id, consumed] : sending) {
        draws.push_back(storage::BucketDraw{static_cast<int>(id.first), id.second, consumed});
    }
    auto shared = exchange_->exchange(draws, now_ms * 1000);
    if (!shared) {
        exchange_failures().inc();
        // Keep the draws: they are added to the shared buckets with the next exchange.
        std::lock_guard lock(pending_mu_);
        for (const auto& [id, consumed] : sending) pending_[id] += consumed;
        return shared.error();
    }
    // The shared TAT holds every instance's draws up to the exchange; this instance's draws since
    // (still pending) come on top.
    for (const auto& bucket : *shared) {
        const auto cls = static_cast<LimitClass>(bucket.limit_class);
        std::int64_t since = 0;
        {
            std::lock_guard lock(pending_mu_);
            auto it = pending_.find(BucketId(cls, bucket.key));
            if (it != pending_.end()) since = it->second;
        }
        local_.raise_tat(cls, bucket.key, bucket.tat_us + since, clock_.now_ms());
    }
    return shared->size();
}

void SharedRateLimitStore::start() {
    if (thread_.joinable()) return;
    thread_ = std::thread([this] { run(); });
    {
        std::lock_guard lock(exact_mu_);
        exact_started_ = true;
    }
    exact_thread_ = std::thread([this] { run_exact_worker(); });
}

void SharedRateLimitStore::stop() {
    {
        std::lock_guard lock(exact_mu_);
        exact_stopping_ = true;
    }
    exact_wake_.notify_all();
    if (exact_thread_.joinable()) exact_thread_.join();
    {
        std::lock_guard lock(run_mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void SharedRateLimitStore::run() {
    bool warned = false;
    for (;;) {
        {
            std::unique_lock lock(run_mu_);
            wake_.wait_for(lock, interval_, [this] { return stopping_; });
            if (stopping_) break;
        }
        auto r = exchange_once();
        if (!r && !warned) {
            log::app()->warn(
                "rate limits: cannot reach the shared buckets ({}); deciding from "
                "this instance's buckets until it can",
                r.error().message);
        }
        warned = !r;
    }
    (void)exchange_once();  // the last draws, so that a restart does not forget them
}

}  // namespace myelin::service
