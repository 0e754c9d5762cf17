#pragma once

// Carries /sync wake-ups between server instances on one database (PostgreSQL), so that a write
// committed through one instance wakes the long-polls waiting on another within milliseconds
// instead of at their timeout. It relays this instance's UserNotifier::notify() calls to the
// backend's WakeChannel, and applies what the other instances publish with
// UserNotifier::notify_local() (which does not relay again).
//
// Publishing never blocks the notifying thread (a writer thread, right after its commit): the
// users go into a bounded queue, de-duplicated, that a thread of the relay's own sends in
// batches (everything queued while the previous batch was being sent goes in the next one).
// When the queue holds kDefaultCapacity users, further users are DROPPED (the newest: the ones
// that do not fit), counted in myelin_wake_feed_dropped_total; so are the users of a batch the
// database refused (it is not retried; the thread backs off 100 ms doubling to 2 s before the
// next batch). A dropped wake-up only makes the long-polls on other instances answer at their
// timeout: late, never wrong (they read storage).
//
// When the channel reports a gap (its listening connection was lost, so wake-ups may have been
// missed), every long-poll of this instance is woken (UserNotifier::wake_all()) to read storage
// again.
//
// Thread-safety: start() and stop() from one thread (the App's); the relay function runs on any
// thread; the handlers run on the channel's thread.

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/wake_channel.hpp"

namespace myelin::service {

class WakeRelay {
public:
    static constexpr std::size_t kDefaultCapacity = 10000;

    // Takes the channel (from Database::open_wake_channel; must not be null) and the notifier,
    // which must outlive the relay. `capacity`: the most users queued for publishing.
    WakeRelay(std::unique_ptr<storage::WakeChannel> channel, UserNotifier& notifier,
              std::size_t capacity = kDefaultCapacity);
    ~WakeRelay();
    WakeRelay(const WakeRelay&) = delete;
    WakeRelay& operator=(const WakeRelay&) = delete;

    // Starts the channel (blocking until it listens) and the publishing thread, and sets itself
    // as the notifier's relay. Call before serving. Error (503) when the channel cannot
    // connect (then nothing is started).
    [[nodiscard]] Result<void> start();

    // Stops publishing (users still queued are not sent) and the channel. The notifier keeps
    // calling the relay, which then queues nothing. Idempotent.
    void stop();

    // Queues users for publishing (what the notifier calls). Never blocks on I/O.
    void relay(const std::vector<std::string>& user_ids);

    // Users queued now (for tests).
    std::size_t queued() const;

private:
    void publish_loop();
    void on_wake(const std::vector<std::string>& user_ids);
    void on_gap();

    std::unique_ptr<storage::WakeChannel> channel_;
    UserNotifier& notifier_;
    const std::size_t capacity_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> queue_;                // guarded by mu_, in arrival order
    std::unordered_set<std::string> queued_users_;  // guarded by mu_: what queue_ holds
    bool running_ = false;                          // guarded by mu_
    bool stopping_ = false;                         // guarded by mu_
    std::thread publisher_;
};

}  // namespace myelin::service
