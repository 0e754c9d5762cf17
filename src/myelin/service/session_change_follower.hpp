#pragma once

// Applies the session changes that other processes on the same database commit (pushed by the
// backend's SessionFeed: PostgreSQL LISTEN/NOTIFY) to this process's token cache, so that a
// token refreshed or revoked through another server instance stops working here within
// milliseconds instead of one revocation-log poll later. The revocation log poller
// (RevocationListener) keeps running beside it as the safety net; the follower only makes
// things faster, and it covers what the log does not: generation advances.
//
// When the feed reports a gap (its connection was lost, so changes may have been missed), the
// follower clears the token cache: every token is then checked against storage on its next
// use, so nothing missed is honoured.
//
// Use: construct, start() BEFORE warming the cache, then warmed() once the cache is warm:
// changes delivered while the cache warmed are applied again after it (warming may have put
// older state over them; re-applying a revocation or a forward-only advance is harmless).
// Thread-safety: start/warmed/stop from one thread (the App's); handlers run on the feed's
// thread.

#include <memory>
#include <mutex>
#include <vector>

#include "myelin/auth/token_cache.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class SessionChangeFollower {
public:
    // Takes the feed (from Database::open_session_feed; must not be null) and the cache, which
    // must outlive the follower.
    SessionChangeFollower(std::unique_ptr<storage::SessionFeed> feed, auth::TokenCache& cache);
    ~SessionChangeFollower();
    SessionChangeFollower(const SessionChangeFollower&) = delete;
    SessionChangeFollower& operator=(const SessionChangeFollower&) = delete;

    // Starts listening (blocking until it does). Error (503) when the feed cannot connect.
    Result<void> start();

    // The cache is warm: re-applies the changes received since start() and stops recording.
    void warmed();

    // Stops the feed. Idempotent.
    void stop();

private:
    void on_change(const storage::SessionChange& change);
    void on_gap();
    void apply(const storage::SessionChange& change);

    std::unique_ptr<storage::SessionFeed> feed_;
    auth::TokenCache& cache_;
    std::mutex mu_;
    bool warming_ = true;                              // guarded by mu_
    std::vector<storage::SessionChange> during_warm_;  // guarded by mu_
};

}  // namespace myelin::service
