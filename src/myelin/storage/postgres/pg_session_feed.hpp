#pragma once

// The PostgreSQL SessionFeed (see storage/session_feed.hpp): a dedicated connection that
// LISTENs on kSessionChannel, to which the write statements that revoke a session or advance
// its generations send a NOTIFY in the same transaction (pg_txn.cpp), so a change is delivered
// to every listening process right after it commits, and never for a transaction that rolled
// back. The listening connection and its thread are a PgListener (pg_listener.hpp): a lost
// connection is reopened with back-off (100 ms doubling to 2 s) and then reported as a gap.
//
// Thread-safety: start() and stop() from one thread; the handlers run on the feed's thread.

#include <optional>
#include <string_view>

#include "myelin/storage/postgres/pg_listener.hpp"
#include "myelin/storage/session_feed.hpp"

namespace myelin::storage::pg {

// The NOTIFY channel of session changes.
inline constexpr std::string_view kSessionChannel = "myelin_sessions";

// The change a NOTIFY payload describes: "r <session_id> <reason>" (revoked) or
// "a <session_id> <current_generation> <used_generation>" (advanced); nullopt for anything
// else (a payload of a newer release, or noise), which the feed ignores.
std::optional<SessionChange> parse_session_change(std::string_view payload);

class PgSessionFeed final : public SessionFeed {
public:
    explicit PgSessionFeed(ConnectionSettings settings);
    ~PgSessionFeed() override;
    PgSessionFeed(const PgSessionFeed&) = delete;
    PgSessionFeed& operator=(const PgSessionFeed&) = delete;

    Result<void> start(ChangeHandler on_change, GapHandler on_gap) override;
    void stop() override;

private:
    PgListener listener_;
};

}  // namespace myelin::storage::pg
