#pragma once

// Typing notifications (typing.yaml; m.typing in /sync): PUT /rooms/{roomId}/typing/{userId}
// keeps the user in the room's TypingSet (typing_set.hpp) until the timeout, in memory only.
// A change wakes the room's joined members through the UserNotifier; the end of a timeout is a
// change too: a timer on the requesting network thread drops the user when the time is up and
// wakes the members (no polling thread).
//
// One process's typing is its own: instances sharing a PostgreSQL database do not see each
// other's typing users (as with UserNotifier wake-ups).
//
// Thread-safety: all methods may be called from any thread; set_typing() must be awaited on a
// network thread's executor (its timers run there).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/service/room_service.hpp"
#include "myelin/service/typing_set.hpp"
#include "myelin/service/user_notifier.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

class TypingService {
public:
    // Without a timeout a user types for 30 s; longer timeouts are cut to 2 minutes.
    static constexpr std::chrono::milliseconds kDefaultTimeout{30'000};
    static constexpr std::chrono::milliseconds kMaxTimeout{120'000};

    // `db`, `clock` and the notifier must outlive the service and its timers (the server stops
    // its network threads first). Serials start at the clock's time.
    TypingService(storage::Database& db, const Clock& clock);

    // Marks `user_id` typing in the room for `timeout` (clamped to 0..kMaxTimeout), or not
    // typing. Only for oneself and only in a room one is joined to. Errors: 403 M_FORBIDDEN
    // (another user; not joined, or no such room), 503.
    boost::asio::awaitable<Result<void>> set_typing(Actor actor, std::string room_id,
                                                    std::string user_id, bool typing,
                                                    std::chrono::milliseconds timeout);

    // The typing set now (for /sync). Thread-safe, no I/O.
    TypingSet::Snapshot snapshot(const std::vector<std::string>& room_ids) const;
    // The serial this process started from (typing_set.hpp).
    std::int64_t first_serial() const;

    // Wakes the joined members' long-polls on every change. nullptr (the default): nobody is
    // woken. Set before serving; `notifier` must outlive the service.
    void set_notifier(UserNotifier* notifier);

    // Cancels every pending timer (they would keep the network threads busy until the timeouts
    // end) and arms no new one (server shutdown). Typing state stays readable.
    void shutdown();

private:
    struct Shared;
    // Starts a timer on `executor` that drops the room's users whose time is up at `until_ms`
    // (none after shutdown()).
    static void arm(const std::shared_ptr<Shared>& shared,
                    const boost::asio::any_io_executor& executor, std::string room_id,
                    std::int64_t until_ms);
    // The timer's work: expire, wake the members when that changed the room, re-arm if the
    // wall clock is behind the timer.
    static void on_due(const std::shared_ptr<Shared>& shared,
                       const boost::asio::any_io_executor& executor, const std::string& room_id,
                       std::int64_t until_ms);
    // Reads the room's joined members (a read job) and wakes them.
    static void wake_members(const std::shared_ptr<Shared>& shared, std::string room_id);

    std::shared_ptr<Shared> shared_;  // also held by pending timers
};

}  // namespace myelin::service
