#pragma once

// The PostgreSQL WakeChannel (see storage/wake_channel.hpp): publish() sends
// `SELECT pg_notify('myelin_wake', payload)` on a publishing connection of its own (autocommit,
// so each message is delivered as soon as that statement ends), and a PgListener (its own
// connection and thread, pg_listener.hpp) LISTENs on kWakeChannel and hands other processes'
// users to the wake handler. Each channel has a random instance ID that it writes into its
// payloads and uses to skip its own.
//
// Thread-safety: start() and stop() from one thread; publish() from one (other) thread at a
// time; the handlers run on the listener's thread.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "myelin/storage/postgres/pg_listener.hpp"
#include "myelin/storage/wake_channel.hpp"

namespace myelin::storage::pg {

// The NOTIFY channel of wake-ups.
inline constexpr std::string_view kWakeChannel = "myelin_wake";

// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; payloads stay at or under this.
inline constexpr std::size_t kMaxWakePayloadBytes = 7900;

// A payload: "w1 <instance_id>" then "\n<user_id>" for each user.
struct WakeMessage {
    std::string instance_id;
    std::vector<std::string> user_ids;
};

// The payloads that carry `user_ids` from `instance_id` (no newline or space in it), each at
// most `max_bytes` long, with as many users as fit in each, in order. Users that cannot be
// carried (empty, holding a NUL or a newline, or too long for one payload) are left out; no
// payload when no user is left.
std::vector<std::string> wake_payloads(std::string_view instance_id,
                                       const std::vector<std::string>& user_ids,
                                       std::size_t max_bytes = kMaxWakePayloadBytes);

// The message a payload holds; nullopt for anything else (a newer release's format, noise).
std::optional<WakeMessage> parse_wake_payload(std::string_view payload);

class PgWakeChannel final : public WakeChannel {
public:
    explicit PgWakeChannel(ConnectionSettings settings);
    ~PgWakeChannel() override;
    PgWakeChannel(const PgWakeChannel&) = delete;
    PgWakeChannel& operator=(const PgWakeChannel&) = delete;

    Result<void> start(WakeHandler on_wake, GapHandler on_gap) override;
    Result<int> publish(const std::vector<std::string>& user_ids) override;
    void stop() override;

    // This channel's instance ID (random, 16 hex digits), for tests and logs.
    const std::string& instance_id() const { return instance_id_; }

private:
    ConnectionSettings publish_settings_;
    std::string instance_id_;
    PgListener listener_;
    std::unique_ptr<Connection> publisher_;  // null until start() and after a failure
};

}  // namespace myelin::storage::pg
