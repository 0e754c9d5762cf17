#pragma once

// A dedicated PostgreSQL connection that LISTENs on one channel and hands each notification's
// payload to a handler on its own thread, for the feeds that carry changes between processes
// (pg_session_feed.hpp, pg_wake_channel.hpp). The thread waits on the connection's socket (no
// polling of tables); a lost connection is reopened with back-off (100 ms doubling to 2 s) and
// then reported as a gap, since notifications sent meanwhile were not delivered.
//
// Thread-safety: start() and stop() from one thread; the handlers run on the listener's thread.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "myelin/storage/postgres/pg_connection.hpp"

namespace myelin::storage::pg {

class PgListener {
public:
    // Called with each notification's payload on the listened channel, in the order received.
    using PayloadHandler = std::function<void(std::string_view payload)>;
    // Called once the listener listens again after its connection was lost.
    using GapHandler = std::function<void()>;

    // `settings` is used for every (re)connection; `channel` must be a plain identifier.
    // `what` names the listener in log lines ("session change feed").
    PgListener(ConnectionSettings settings, std::string channel, std::string what);
    ~PgListener();
    PgListener(const PgListener&) = delete;
    PgListener& operator=(const PgListener&) = delete;

    // Connects and LISTENs before returning, then delivers on its own thread until stop().
    // Error (503) when the first connection fails. Call once.
    [[nodiscard]] Result<void> start(PayloadHandler on_payload, GapHandler on_gap);

    // Stops and joins the thread (returns within about 100 ms). Idempotent.
    void stop();

private:
    Result<std::unique_ptr<Connection>> connect_and_listen() const;
    void run(std::unique_ptr<Connection> conn);

    ConnectionSettings settings_;
    std::string channel_;
    std::string what_;
    PayloadHandler on_payload_;
    GapHandler on_gap_;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace myelin::storage::pg
