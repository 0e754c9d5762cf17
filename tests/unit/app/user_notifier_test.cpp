// UserNotifier: long-polls woken by a notification for their user (and only theirs), from any
// thread, without lost wake-ups; timeouts and shutdown; the relay to other instances (notify()
// relays, notify_local() does not) and wake_all() after a relay gap.

#include "myelin/service/user_notifier.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

namespace myelin::service {
namespace {

using namespace std::chrono_literals;

// A network thread: its own single-threaded io_context.
class Worker {
public:
    Worker() : guard_(ioc_.get_executor()), thread_([this] { ioc_.run(); }) {}
    ~Worker() {
        guard_.reset();
        thread_.join();
    }
    std::future<std::uint64_t> wait(UserNotifier& notifier, std::string user, std::uint64_t seen,
                                    std::chrono::milliseconds timeout) {
        return boost::asio::co_spawn(ioc_, notifier.wait(std::move(user), seen, timeout),
                                     boost::asio::use_future);
    }

private:
    boost::asio::io_context ioc_{1};
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
    std::thread thread_;
};

// Blocks until `n` waiters are registered (they start asynchronously on the worker).
void until_waiting(const UserNotifier& notifier, std::size_t n) {
    while (notifier.waiting() != n) std::this_thread::sleep_for(1ms);
}

TEST(UserNotifier, CountersStartAtZeroAndRiseOnlyForTheNotifiedUser) {
    UserNotifier notifier;
    EXPECT_EQ(notifier.counter("@a:x"), 0u);
    notifier.notify("@a:x");
    const auto a1 = notifier.counter("@a:x");
    EXPECT_GT(a1, 0u);
    EXPECT_EQ(notifier.counter("@b:x"), 0u);
    notifier.notify(std::vector<std::string>{"@a:x", "@b:x"});
    EXPECT_GT(notifier.counter("@a:x"), a1);
    EXPECT_GT(notifier.counter("@b:x"), 0u);
}

TEST(UserNotifier, ANotificationWakesEveryWaiterOfThatUserLongBeforeTheTimeout) {
    UserNotifier notifier;
    Worker first_thread, second_thread;
    auto a1 = first_thread.wait(notifier, "@a:x", 0, 60s);
    auto a2 = second_thread.wait(notifier, "@a:x", 0, 60s);
    auto b = first_thread.wait(notifier, "@b:x", 0, 60s);
    until_waiting(notifier, 3);

    notifier.notify("@a:x");  // from this thread, neither worker's
    const auto expected = notifier.counter("@a:x");
    EXPECT_EQ(a1.get(), expected);
    EXPECT_EQ(a2.get(), expected);
    // Bob's long-poll is still waiting.
    EXPECT_EQ(b.wait_for(50ms), std::future_status::timeout);
    EXPECT_EQ(notifier.waiting(), 1u);
    notifier.notify("@b:x");
    EXPECT_EQ(b.get(), notifier.counter("@b:x"));
    EXPECT_EQ(notifier.waiting(), 0u);
}

TEST(UserNotifier, ANotificationBetweenReadingTheCounterAndWaitingIsNotLost) {
    UserNotifier notifier;
    Worker worker;
    const auto seen = notifier.counter("@a:x");
    notifier.notify("@a:x");  // e.g. committed while the request read storage
    auto woken = worker.wait(notifier, "@a:x", seen, 60s);
    ASSERT_EQ(woken.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(woken.get(), notifier.counter("@a:x"));
    EXPECT_EQ(notifier.waiting(), 0u);
}

TEST(UserNotifier, ATimeoutReturnsTheUnchangedCounterAndForgetsTheWaiter) {
    UserNotifier notifier;
    Worker worker;
    notifier.notify("@a:x");
    const auto seen = notifier.counter("@a:x");
    EXPECT_EQ(worker.wait(notifier, "@a:x", seen, 20ms).get(), seen);
    EXPECT_EQ(notifier.waiting(), 0u);
    // A later notification finds no stale waiter and still raises the counter.
    notifier.notify("@a:x");
    EXPECT_GT(notifier.counter("@a:x"), seen);
}

TEST(UserNotifier, ShutdownWakesEveryoneAndLaterWaitsReturnAtOnce) {
    UserNotifier notifier;
    Worker worker;
    std::vector<std::future<std::uint64_t>> waits;
    for (int i = 0; i < 50; ++i) {
        waits.push_back(worker.wait(notifier, "@u" + std::to_string(i) + ":x", 0, 60s));
    }
    until_waiting(notifier, 50);
    notifier.shutdown();
    for (auto& w : waits) EXPECT_EQ(w.get(), 0u);
    auto late = worker.wait(notifier, "@late:x", 0, 60s);
    ASSERT_EQ(late.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(notifier.waiting(), 0u);
}

TEST(UserNotifier, ManyNotifiersAndWaitersOnSeveralThreadsLoseNoWakeUp) {
    UserNotifier notifier;
    Worker first_thread, second_thread;
    constexpr int kRounds = 200;
    std::atomic<int> woken{0};
    std::thread notifying([&] {
        for (int i = 0; i < kRounds * 4; ++i) {
            notifier.notify("@a:x");
            std::this_thread::yield();
        }
    });
    // Each wait starts from a fresh counter read: it either returns at once or is woken by a
    // later notification; none may sit out its 60 s timeout while notifications still come.
    for (int i = 0; i < kRounds; ++i) {
        Worker& w = i % 2 == 0 ? first_thread : second_thread;
        const auto seen = notifier.counter("@a:x");
        auto got = w.wait(notifier, "@a:x", seen, 60s);
        notifier.notify("@a:x");
        ASSERT_EQ(got.wait_for(10s), std::future_status::ready) << "round " << i;
        EXPECT_NE(got.get(), seen);
        ++woken;
    }
    notifying.join();
    EXPECT_EQ(woken.load(), kRounds);
    EXPECT_EQ(notifier.waiting(), 0u);
}

TEST(UserNotifier, NotifyHandsTheUsersToTheRelayOnceAfterWakingLocally) {
    UserNotifier notifier;
    Worker worker;
    std::vector<std::vector<std::string>> relayed;
    std::vector<std::uint64_t> counter_when_relayed;
    notifier.set_relay([&](const std::vector<std::string>& users) {
        relayed.push_back(users);
        counter_when_relayed.push_back(notifier.counter(users.front()));
    });
    auto a = worker.wait(notifier, "@a:x", 0, 60s);
    until_waiting(notifier, 1);
    notifier.notify("@a:x");
    EXPECT_EQ(a.get(), notifier.counter("@a:x"));
    notifier.notify(std::vector<std::string>{"@b:x", "@c:x"});
    notifier.notify(std::vector<std::string>{});  // nothing to relay
    ASSERT_EQ(relayed.size(), 2u);
    EXPECT_EQ(relayed[0], std::vector<std::string>{"@a:x"});
    EXPECT_EQ(relayed[1], (std::vector<std::string>{"@b:x", "@c:x"}));
    // The local counters were raised before the relay was called.
    EXPECT_GT(counter_when_relayed[0], 0u);
    EXPECT_GT(counter_when_relayed[1], 0u);
}

TEST(UserNotifier, NotifyLocalWakesOnlyHereAndDoesNotRelay) {
    UserNotifier notifier;
    Worker worker;
    int relay_calls = 0;
    notifier.set_relay([&](const std::vector<std::string>&) { ++relay_calls; });
    auto a = worker.wait(notifier, "@a:x", 0, 60s);
    auto b = worker.wait(notifier, "@b:x", 0, 60s);
    until_waiting(notifier, 2);
    notifier.notify_local(std::vector<std::string>{"@a:x"});  // from another instance
    EXPECT_EQ(a.get(), notifier.counter("@a:x"));
    EXPECT_GT(notifier.counter("@a:x"), 0u);
    EXPECT_EQ(b.wait_for(50ms), std::future_status::timeout);
    EXPECT_EQ(relay_calls, 0);
    notifier.notify_local(std::vector<std::string>{"@b:x"});
    EXPECT_EQ(b.get(), notifier.counter("@b:x"));
    EXPECT_EQ(relay_calls, 0);
}

TEST(UserNotifier, WakeAllWakesEveryWaiterWithoutRelayingAndLaterWaitsStillWait) {
    UserNotifier notifier;
    Worker worker;
    int relay_calls = 0;
    notifier.set_relay([&](const std::vector<std::string>&) { ++relay_calls; });
    std::vector<std::future<std::uint64_t>> waits;
    for (int i = 0; i < 20; ++i) {
        waits.push_back(worker.wait(notifier, "@u" + std::to_string(i) + ":x", 0, 60s));
    }
    until_waiting(notifier, 20);
    notifier.wake_all();
    for (auto& w : waits) EXPECT_GT(w.get(), 0u);
    EXPECT_EQ(relay_calls, 0);
    EXPECT_EQ(notifier.waiting(), 0u);
    // Not a shutdown: a wait from the new counter waits again, until notified.
    const auto seen = notifier.counter("@u0:x");
    auto again = worker.wait(notifier, "@u0:x", seen, 60s);
    until_waiting(notifier, 1);
    EXPECT_EQ(again.wait_for(50ms), std::future_status::timeout);
    notifier.notify("@u0:x");
    EXPECT_GT(again.get(), seen);
}

TEST(UserNotifier, WakeAllBetweenReadingTheCounterAndWaitingIsNotLostEvenForUnseenUsers) {
    UserNotifier notifier;
    Worker worker;
    // Read before the wake-all, by a user the notifier has never seen.
    const auto seen = notifier.counter("@new:x");
    EXPECT_EQ(seen, 0u);
    notifier.wake_all();
    EXPECT_GT(notifier.counter("@new:x"), seen);
    EXPECT_GT(notifier.counter("@other:x"), 0u);
    auto woken = worker.wait(notifier, "@new:x", seen, 60s);
    ASSERT_EQ(woken.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(woken.get(), notifier.counter("@new:x"));
    // A notification after the wake-all still raises the counter above it.
    const auto after = notifier.counter("@new:x");
    notifier.notify("@new:x");
    EXPECT_GT(notifier.counter("@new:x"), after);
}

}  // namespace
}  // namespace myelin::service
