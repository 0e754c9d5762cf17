// The wake relay with a scripted channel: notify() is published from the relay's own thread in
// batches, de-duplicated while queued; a full queue drops the newest users and counts them
// instead of blocking; a failed publish is counted as dropped and the next batch still goes out;
// other instances' wake-ups wake local long-polls without being published again; a gap wakes
// every long-poll.

#include "myelin/service/wake_relay.hpp"

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include "myelin/core/metrics.hpp"

namespace myelin::service {
namespace {

using namespace std::chrono_literals;

// A channel whose deliveries the test makes by hand and whose publish() records the batches;
// publish() can be held (to fill the queue) and made to fail.
class ScriptedChannel final : public storage::WakeChannel {
public:
    Result<void> start(WakeHandler on_wake, GapHandler on_gap) override {
        on_wake_ = std::move(on_wake);
        on_gap_ = std::move(on_gap);
        return {};
    }
    Result<int> publish(const std::vector<std::string>& user_ids) override {
        std::unique_lock lock(mu_);
        ++publishing_;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !held_; });
        if (fail_next_) {
            fail_next_ = false;
            failed_.push_back(user_ids);
            cv_.notify_all();
            return errors::unavailable("the database is down (scripted)");
        }
        batches_.push_back(user_ids);
        cv_.notify_all();
        return 1;
    }
    void stop() override {
        std::lock_guard lock(mu_);
        held_ = false;
        cv_.notify_all();
    }

    void deliver(const std::vector<std::string>& users) { on_wake_(users); }
    void gap() { on_gap_(); }
    void hold() {
        std::lock_guard lock(mu_);
        held_ = true;
    }
    void release() {
        std::lock_guard lock(mu_);
        held_ = false;
        cv_.notify_all();
    }
    void fail_next() {
        std::lock_guard lock(mu_);
        fail_next_ = true;
    }
    // Waits (up to 10 s) until `n` publish() calls have started.
    void until_publishing(int n) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, 10s, [&] { return publishing_ >= n; });
    }
    // Waits (up to 10 s) until the published users include `user`; returns every batch.
    std::vector<std::vector<std::string>> until_published(const std::string& user) {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, 10s, [&] {
            for (const auto& b : batches_) {
                for (const auto& u : b) {
                    if (u == user) return true;
                }
            }
            return false;
        });
        return batches_;
    }
    std::vector<std::vector<std::string>> failed() {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, 10s, [&] { return !failed_.empty(); });
        return failed_;
    }
    std::vector<std::vector<std::string>> batches() {
        std::lock_guard lock(mu_);
        return batches_;
    }

private:
    WakeHandler on_wake_;
    GapHandler on_gap_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool held_ = false;
    bool fail_next_ = false;
    int publishing_ = 0;
    std::vector<std::vector<std::string>> batches_;
    std::vector<std::vector<std::string>> failed_;
};

// A network thread: its own single-threaded io_context.
class Worker {
public:
    Worker() : guard_(ioc_.get_executor()), thread_([this] { ioc_.run(); }) {}
    ~Worker() {
        guard_.reset();
        thread_.join();
    }
    std::future<std::uint64_t> wait(UserNotifier& notifier, std::string user, std::uint64_t seen) {
        return boost::asio::co_spawn(ioc_, notifier.wait(std::move(user), seen, 60s),
                                     boost::asio::use_future);
    }

private:
    boost::asio::io_context ioc_{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

std::uint64_t metric(std::string_view name) { return metrics::counter(name, "").value(); }

// The counter once it reached `at_least` (waits up to 10 s: the relay's thread counts after
// publish() returns).
std::uint64_t metric_once(std::string_view name, std::uint64_t at_least) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (metric(name) < at_least && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(1ms);
    }
    return metric(name);
}

struct WakeRelayTest : ::testing::Test {
    void SetUp() override { start(WakeRelay::kDefaultCapacity); }
    void start(std::size_t capacity) {
        if (relay) relay->stop();
        auto c = std::make_unique<ScriptedChannel>();
        channel = c.get();
        relay = std::make_unique<WakeRelay>(std::move(c), notifier, capacity);
        ASSERT_TRUE(relay->start());
    }
    void TearDown() override {
        if (relay) relay->stop();
    }
    void until_waiting(std::size_t n) {
        while (notifier.waiting() != n) std::this_thread::sleep_for(1ms);
    }

    UserNotifier notifier;
    ScriptedChannel* channel = nullptr;
    std::unique_ptr<WakeRelay> relay;
};

TEST_F(WakeRelayTest, TheMetricsArePresentAtZeroFromStartUp) {
    const std::string text = metrics::render_prometheus();
    for (const char* name : {"myelin_wake_feed_published_total", "myelin_wake_feed_received_total",
                             "myelin_wake_feed_dropped_total", "myelin_wake_feed_gaps_total"}) {
        EXPECT_NE(text.find(std::string("# TYPE ") + name + " counter"), std::string::npos) << name;
    }
}

TEST_F(WakeRelayTest, NotifiedUsersArePublishedAndCounted) {
    const auto published = metric("myelin_wake_feed_published_total");
    notifier.notify(std::vector<std::string>{"@a:x", "@b:x"});
    const auto batches = channel->until_published("@b:x");
    ASSERT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0], (std::vector<std::string>{"@a:x", "@b:x"}));
    EXPECT_EQ(metric_once("myelin_wake_feed_published_total", published + 2), published + 2);
}

TEST_F(WakeRelayTest, UsersQueuedWhileABatchIsSentGoTogetherOnceEach) {
    channel->hold();
    notifier.notify("@first:x");
    channel->until_publishing(1);  // the first batch is out, the thread is busy
    notifier.notify(std::vector<std::string>{"@a:x", "@b:x"});
    notifier.notify(std::vector<std::string>{"@b:x", "@a:x", "@c:x"});
    EXPECT_EQ(relay->queued(), 3u);
    channel->release();
    const auto batches = channel->until_published("@c:x");
    ASSERT_EQ(batches.size(), 2u);
    EXPECT_EQ(batches[0], std::vector<std::string>{"@first:x"});
    EXPECT_EQ(batches[1], (std::vector<std::string>{"@a:x", "@b:x", "@c:x"}));
}

TEST_F(WakeRelayTest, AFullQueueDropsTheNewestUsersAndCountsThemWithoutBlocking) {
    start(3);
    channel->hold();
    notifier.notify("@first:x");
    channel->until_publishing(1);
    const auto dropped = metric("myelin_wake_feed_dropped_total");
    // Returns at once although nothing can be sent now.
    notifier.notify(std::vector<std::string>{"@a:x", "@b:x", "@c:x", "@d:x", "@e:x"});
    notifier.notify("@a:x");  // already queued: neither queued again nor dropped
    EXPECT_EQ(relay->queued(), 3u);
    EXPECT_EQ(metric("myelin_wake_feed_dropped_total"), dropped + 2);
    // Local long-polls were woken all the same.
    EXPECT_GT(notifier.counter("@e:x"), 0u);
    channel->release();
    const auto batches = channel->until_published("@c:x");
    ASSERT_EQ(batches.size(), 2u);
    EXPECT_EQ(batches[1], (std::vector<std::string>{"@a:x", "@b:x", "@c:x"}));
}

TEST_F(WakeRelayTest, AFailedPublishIsCountedAsDroppedAndTheNextBatchStillGoesOut) {
    const auto dropped = metric("myelin_wake_feed_dropped_total");
    channel->fail_next();
    notifier.notify(std::vector<std::string>{"@a:x", "@b:x"});
    const auto failed = channel->failed();
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(metric_once("myelin_wake_feed_dropped_total", dropped + 2), dropped + 2);
    notifier.notify("@c:x");
    const auto batches = channel->until_published("@c:x");
    ASSERT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0], std::vector<std::string>{"@c:x"});
}

TEST_F(WakeRelayTest, OtherInstancesWakeUpsWakeLocalLongPollsAndAreNotPublishedAgain) {
    Worker worker;
    const auto received = metric("myelin_wake_feed_received_total");
    auto a = worker.wait(notifier, "@a:x", 0);
    auto b = worker.wait(notifier, "@b:x", 0);
    until_waiting(2);
    channel->deliver({"@a:x"});
    EXPECT_EQ(a.get(), notifier.counter("@a:x"));
    EXPECT_EQ(b.wait_for(50ms), std::future_status::timeout);
    EXPECT_EQ(metric("myelin_wake_feed_received_total"), received + 1);
    // A later local notification is published alone: the received one never was.
    notifier.notify("@b:x");
    EXPECT_EQ(b.get(), notifier.counter("@b:x"));
    const auto batches = channel->until_published("@b:x");
    ASSERT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0], std::vector<std::string>{"@b:x"});
}

TEST_F(WakeRelayTest, AGapWakesEveryLongPollAndIsCounted) {
    Worker worker;
    const auto gaps = metric("myelin_wake_feed_gaps_total");
    auto a = worker.wait(notifier, "@a:x", 0);
    auto b = worker.wait(notifier, "@b:x", 0);
    until_waiting(2);
    channel->gap();
    EXPECT_GT(a.get(), 0u);
    EXPECT_GT(b.get(), 0u);
    EXPECT_EQ(metric("myelin_wake_feed_gaps_total"), gaps + 1);
    EXPECT_TRUE(channel->batches().empty());  // nothing is published for a gap
}

TEST_F(WakeRelayTest, AfterStopNothingIsQueued) {
    relay->stop();
    notifier.notify("@a:x");
    EXPECT_EQ(relay->queued(), 0u);
    EXPECT_GT(notifier.counter("@a:x"), 0u);
}

}  // namespace
}  // namespace myelin::service
