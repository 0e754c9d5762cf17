#pragma once

// Follows the shared revocation log and applies every entry to the in-memory token cache, so
// that a revocation committed by another process on the same database (the `myelin admin` CLI,
// later other server instances) stops the session's tokens here within about one poll interval.
// Revocations this process made itself come back through the log too; applying them again is
// harmless (the cache treats it as a no-op).
//
// Housekeeping prunes old log entries. A listener that fell so far behind that entries it never
// applied were pruned (the log's pruned-through mark is above its last id) cannot know which
// sessions they named: it re-applies every revoked session from storage instead (a resync),
// then carries on from the newest entry. So it never keeps serving a revoked token.
//
// Use: construct, call prime() before warming the token cache (so that a revocation committed
// while warming is still applied), then start(); stop() (or the destructor) ends the thread.
// Thread-safety: prime/start/stop are called from one thread (the App's); the poller runs on
// its own thread and reads storage through the database's reader threads, never a network
// thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "myelin/auth/token_cache.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class RevocationListener {
public:
    RevocationListener(storage::Database& db, auth::TokenCache& cache,
                       std::chrono::milliseconds interval = std::chrono::milliseconds(200));
    ~RevocationListener();
    RevocationListener(const RevocationListener&) = delete;
    RevocationListener& operator=(const RevocationListener&) = delete;

    // Remembers the newest log entry as the starting point (entries up to it are already
    // reflected in storage, which a cache warmed afterwards reads). Blocking; storage errors
    // are returned.
    Result<void> prime();

    // Starts the polling thread. Call once, after prime().
    void start();

    // Stops and joins the polling thread. Idempotent.
    void stop();

    // Reads every entry newer than the last one seen and applies it to the cache; returns how
    // many were applied. If entries newer than the last one seen were pruned, resyncs first (see
    // above; every revoked session re-applied counts as one). Blocking (the poller calls it;
    // tests may too); storage errors are returned and the position is kept.
    Result<std::size_t> poll_once();

    // The id of the last log entry applied (or primed).
    std::int64_t last_id() const;

private:
    void run();
    // Applies every revoked session in storage to the cache, then moves the position to the
    // newest log entry as read before the scan. Returns the sessions applied.
    Result<std::size_t> resync();
    bool stopping() const;

    storage::Database& db_;
    auth::TokenCache& cache_;
    std::chrono::milliseconds interval_;
    mutable std::mutex mu_;
    std::condition_variable wake_;
    bool stopping_ = false;     // guarded by mu_
    std::int64_t last_id_ = 0;  // guarded by mu_ (written only by the polling thread after start)
    std::thread thread_;
};

}  // namespace myelin::service
