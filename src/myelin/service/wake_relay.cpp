#include "myelin/service/wake_relay.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"

namespace myelin::service {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};

metrics::Counter& published_counter() {
    static metrics::Counter& c =
        metrics::counter("myelin_wake_feed_published_total",
                         "User wake-ups (one per user) this instance sent to the other instances.");
    return c;
}

metrics::Counter& received_counter() {
    static metrics::Counter& c = metrics::counter(
        "myelin_wake_feed_received_total",
        "User wake-ups (one per user) received from other instances and applied to this "
        "instance's long-polls.");
    return c;
}

metrics::Counter& dropped_counter() {
    static metrics::Counter& c = metrics::counter(
        "myelin_wake_feed_dropped_total",
        "User wake-ups not sent to the other instances (publishing queue full, or the database "
        "refused them); their long-polls there answer at their timeout.");
    return c;
}

metrics::Counter& gaps_counter() {
    static metrics::Counter& c = metrics::counter(
        "myelin_wake_feed_gaps_total",
        "Times the wake channel reconnected after possibly missing wake-ups, and every "
        "long-poll of this instance was woken.");
    return c;
}

}  // namespace

WakeRelay::WakeRelay(std::unique_ptr<storage::WakeChannel> channel, UserNotifier& notifier,
                     std::size_t capacity)
    : channel_(std::move(channel)), notifier_(notifier), capacity_(capacity) {
    (void)published_counter();  // present at zero from start-up
    (void)received_counter();
    (void)dropped_counter();
    (void)gaps_counter();
}

WakeRelay::~WakeRelay() { stop(); }

Result<void> WakeRelay::start() {
    auto started =
        channel_->start([this](const std::vector<std::string>& user_ids) { on_wake(user_ids); },
                        [this] { on_gap(); });
    if (!started) return started.error();
    {
        std::lock_guard lock(mu_);
        running_ = true;
    }
    publisher_ = std::thread([this] { publish_loop(); });
    notifier_.set_relay([this](const std::vector<std::string>& user_ids) { relay(user_ids); });
    return {};
}

void WakeRelay::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        running_ = false;
    }
    cv_.notify_all();
    if (publisher_.joinable()) publisher_.join();
    if (channel_) channel_->stop();
}

void WakeRelay::relay(const std::vector<std::string>& user_ids) {
    std::uint64_t dropped = 0;
    {
        std::lock_guard lock(mu_);
        if (!running_) return;
        for (const auto& user_id : user_ids) {
            if (queued_users_.contains(user_id)) continue;  // already going out
            if (queue_.size() >= capacity_) {
                ++dropped;
                continue;
            }
            queued_users_.insert(user_id);
            queue_.push_back(user_id);
        }
    }
    if (dropped > 0) dropped_counter().inc(dropped);
    cv_.notify_one();
}

std::size_t WakeRelay::queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
}

void WakeRelay::publish_loop() {
    auto backoff = kFirstBackoff;
    while (true) {
        std::vector<std::string> batch;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            batch.swap(queue_);
            queued_users_.clear();
        }
        auto sent = channel_->publish(batch);
        if (sent) {
            published_counter().inc(batch.size());
            backoff = kFirstBackoff;
            continue;
        }
        dropped_counter().inc(batch.size());
        log::app()->warn("could not send {} wake-ups to the other instances: {}", batch.size(),
                         sent.error().message);
        // Back off without holding up stop().
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, backoff, [this] { return stopping_; });
        if (stopping_) return;
        backoff = std::min(backoff * 2, kMaxBackoff);
    }
}

void WakeRelay::on_wake(const std::vector<std::string>& user_ids) {
    notifier_.notify_local(user_ids);
    received_counter().inc(user_ids.size());
}

void WakeRelay::on_gap() {
    gaps_counter().inc();
    log::app()->warn(
        "wake-ups from other instances may have been missed while the wake channel was down; "
        "every waiting /sync long-poll was woken");
    notifier_.wake_all();
}

}  // namespace myelin::service
