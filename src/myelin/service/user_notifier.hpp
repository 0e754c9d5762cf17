#pragma once

// Wakes a user's long-polls (/sync with a timeout) the moment something for that user is
// committed, without polling: each waiting request is a timer on its own network thread that a
// notification cancels early. What changed is not carried: the woken request reads its streams
// from storage; the notifier only says "look again".
//
// No lost wake-ups: every user has a wake counter; a request reads counter() before it reads
// storage and passes that value to wait(), which returns at once if a notification came in
// between.
//
// Thread-safety: all methods are safe from any thread. wait() must be awaited on a
// single-threaded executor or a strand (each network thread's io_context is one), so that the
// cancel a notification posts runs only once the waiting coroutine has suspended.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace myelin::service {

class UserNotifier {
public:
    // The user's wake counter: 0 until the first notification, then the notification's
    // sequence number (increasing across all users).
    std::uint64_t counter(std::string_view user_id) const;

    // Raises the user's counter and wakes every wait() of theirs. Never blocks on I/O; the
    // waiters resume on their own executors.
    void notify(std::string_view user_id);
    // notify() for each user (e.g. a room's members), under one lock.
    void notify(const std::vector<std::string>& user_ids);

    // Waits until the user's counter differs from `seen` (returns at once if it already does),
    // `timeout` passes, or shutdown() is called; returns the counter then. Costs a timer and a
    // list slot while it waits.
    boost::asio::awaitable<std::uint64_t> wait(std::string user_id, std::uint64_t seen,
                                               std::chrono::milliseconds timeout);

    // Wakes every waiter and makes later wait() calls return at once (server shutdown).
    void shutdown();

    // How many wait() calls are waiting now (for metrics and tests).
    std::size_t waiting() const;

private:
    using Timer = boost::asio::steady_timer;
    struct Entry {
        std::uint64_t counter = 0;
        std::vector<std::shared_ptr<Timer>> waiters;
    };
    // Under mutex_: raises the counter and moves the user's waiters to `woken`.
    void notify_locked(const std::string& user_id, std::vector<std::shared_ptr<Timer>>& woken);
    static void wake(const std::vector<std::shared_ptr<Timer>>& woken);

    mutable std::mutex mutex_;
    // One entry per user ever notified or waited for (a few dozen bytes each; bounded by the
    // local users).
    std::unordered_map<std::string, Entry> entries_;
    std::uint64_t sequence_ = 0;
    std::size_t waiting_ = 0;
    bool shut_down_ = false;
};

}  // namespace myelin::service
