#pragma once

// Pushed session changes: when several processes share one database (several server instances
// on PostgreSQL), each must learn at once that another one revoked a session or advanced its
// token generations (a refresh, or the first use of a refreshed access token), so that its
// in-memory token cache stops honouring the old tokens. A backend that can push such changes
// (PostgreSQL, through LISTEN/NOTIFY sent in the same transaction as the change, so delivered
// only once it has committed) offers a SessionFeed; one that cannot (SQLite: one server process
// per database) offers none, and the revocation log poller alone keeps caches right.
//
// A feed may lose changes while its connection is down. It then reports a gap once it is
// connected again: the follower must assume any session may have changed meanwhile.

#include <cstdint>
#include <functional>

#include "myelin/storage/records.hpp"

namespace myelin::storage {

// One committed change to a session, made by any process sharing the database (this one too).
struct SessionChange {
    enum class Kind : std::uint8_t {
        kRevoked,   // the session ended (reason)
        kAdvanced,  // current/used generations moved forward
    };
    Kind kind = Kind::kAdvanced;
    std::int64_t session_id = 0;
    RevokeReason reason = RevokeReason::kNone;  // kRevoked only
    std::int64_t current_generation = 0;        // kAdvanced only
    std::int64_t used_generation = 0;           // kAdvanced only
};

class SessionFeed {
public:
    // Called on the feed's own thread, one change at a time, in commit order per connection.
    using ChangeHandler = std::function<void(const SessionChange&)>;
    // Called on the feed's own thread once it is listening again after its connection was lost
    // (changes committed meanwhile were not delivered), and once at the first connection if
    // that took more than one attempt.
    using GapHandler = std::function<void()>;

    virtual ~SessionFeed() = default;

    // Connects and starts listening before returning (changes committed from then on are
    // delivered), then delivers on its own thread until stop(). Error (503) when the first
    // connection fails; later losses are retried by the thread (with back-off) and end in a
    // gap report. Call once.
    virtual Result<void> start(ChangeHandler on_change, GapHandler on_gap) = 0;

    // Stops and joins the thread (returns within about 100 ms). Idempotent.
    virtual void stop() = 0;
};

}  // namespace myelin::storage
