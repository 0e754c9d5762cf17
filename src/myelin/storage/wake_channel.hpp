#pragma once

// Wake-ups between processes sharing one database (several server instances on PostgreSQL): a
// write committed through one instance wakes the /sync long-polls of the users it concerns
// (service/user_notifier.hpp); those long-polls may wait on another instance. A backend that can
// carry such wake-ups (PostgreSQL: NOTIFY on one connection, LISTEN on another) offers a
// WakeChannel; one that cannot (SQLite: one server process per database) offers none, and every
// wake-up stays in its process.
//
// Only "look again" is carried, never data: the woken long-poll reads storage, which holds the
// commit already (a wake-up is published after its commit). So a lost wake-up only makes a
// long-poll answer at its timeout (late, never wrong), and a spurious one costs one re-read.
//
// A channel may lose wake-ups while its listening connection is down. It then reports a gap
// once it listens again: the receiver must assume any of its users may have been woken.

#include <functional>
#include <string>
#include <vector>

#include "myelin/core/error.hpp"

namespace myelin::storage {

class WakeChannel {
public:
    // Called on the channel's listening thread with the users of one wake-up that ANOTHER
    // process published (this channel's own are ignored).
    using WakeHandler = std::function<void(const std::vector<std::string>& user_ids)>;
    // Called on the listening thread once it listens again after its connection was lost
    // (wake-ups published meanwhile were not delivered), and once at the first connection if
    // that took more than one attempt.
    using GapHandler = std::function<void()>;

    virtual ~WakeChannel() = default;

    // Connects (a listening and a publishing connection) and starts listening before returning
    // (wake-ups published from then on are delivered), then delivers on its own thread until
    // stop(). Error (503) when the first connection fails; later losses are retried by the
    // thread (with back-off) and end in a gap report. Call once.
    virtual Result<void> start(WakeHandler on_wake, GapHandler on_gap) = 0;

    // Sends `user_ids` to every other process listening on the database, in as few messages as
    // the backend's size limit allows. Blocks on the publishing connection's I/O: call it from
    // one dedicated thread, never from a network or writer thread. A broken connection is
    // reopened by the next call. Returns the number of messages sent; error (503) when the
    // database cannot be reached (nothing after the failure was sent). User IDs that cannot be
    // carried (empty, too long, or holding a NUL or newline) are skipped.
    [[nodiscard]] virtual Result<int> publish(const std::vector<std::string>& user_ids) = 0;

    // Stops listening and joins the thread (returns within about 100 ms), then closes the
    // publishing connection; publish() must not be running. Idempotent.
    virtual void stop() = 0;
};

}  // namespace myelin::storage
