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
// Several processes on one database: notify() also hands the users to a relay (set_relay; see
// service/wake_relay.hpp), which carries them to the other instances; what those instances
// relay back comes in through notify_local(), which does not relay again. wake_all() is for a
// relay that may have missed wake-ups (its connection was lost).
//
// Thread-safety: all methods are safe from any thread (set_relay: see there). wait() must be
// awaited on a single-threaded executor or a strand (each network thread's io_context is one), so
// that the cancel a notification posts runs only once the waiting coroutine has suspended.

#include <chrono>
#include <cstdint>
#include <functional>
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
    // Receives the users of every notify() call (not notify_local's), on the notifying thread,
    // after the local waiters were woken. Must not block (it queues; see WakeRelay).
    using Relay = std::function<void(const std::vector<std::string>& user_ids)>;

    // The user's wake counter: 0 until the first notification, then the sequence number of the
    // latest notification of the user or wake_all() (increasing across all users).
    std::uint64_t counter(std::string_view user_id) const;

    // Raises the user's counter and wakes every wait() of theirs, then hands the user to the
    // relay if one is set. Never blocks on I/O; the waiters resume on their own executors.
    void notify(std::string_view user_id);
    // notify() for each user (e.g. a room's members), under one lock; one relay call.
    void notify(const std::vector<std::string>& user_ids);

    // notify() without the relay: for wake-ups that came from another instance.
    void notify_local(const std::vector<std::string>& user_ids);

    // Raises every user's counter (also users not seen yet) and wakes every waiter, without
    // relaying: each woken long-poll reads storage again, which is always right. For when
    // wake-ups from other instances may have been lost. Unlike shutdown(), later wait() calls
    // wait as usual.
    void wake_all();

    // Sets the relay of notify(). Call before any notify() or wait() (at start-up, before
    // serving); not synchronised with them.
    void set_relay(Relay relay) { relay_ = std::move(relay); }

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
    // Under mutex_: the user's counter (wake_all() included).
    std::uint64_t counter_locked(const Entry& entry) const;
    // Under mutex_: moves every waiter to `woken`.
    void take_all_waiters_locked(std::vector<std::shared_ptr<Timer>>& woken);
    static void wake(const std::vector<std::shared_ptr<Timer>>& woken);

    mutable std::mutex mutex_;
    // One entry per user ever notified or waited for (a few dozen bytes each; bounded by the
    // local users).
    std::unordered_map<std::string, Entry> entries_;
    std::uint64_t sequence_ = 0;
    std::uint64_t woke_all_at_ = 0;  // the sequence number of the last wake_all(), 0 if none
    std::size_t waiting_ = 0;
    bool shut_down_ = false;
    Relay relay_;
};

}  // namespace myelin::service
