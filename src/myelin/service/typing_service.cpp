#include "myelin/service/typing_service.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "myelin/storage/await.hpp"

namespace myelin::service {

struct TypingService::Shared {
    Shared(storage::Database& d, const Clock& c) : db(d), clock(c), set(c.now_ms()) {}
    storage::Database& db;
    const Clock& clock;
    TypingSet set;
    std::atomic<UserNotifier*> notifier{nullptr};

    using Timer = boost::asio::steady_timer;
    std::mutex timers_mutex;
    // The pending timers by ID (a timer removes itself when it ran or was cancelled).
    std::unordered_map<std::uint64_t, std::weak_ptr<Timer>> timers;
    std::uint64_t next_timer_id = 0;
    bool shut_down = false;
};

namespace {

// The room's joined members, when `user_id` is one of them. 403 otherwise.
Result<std::vector<std::string>> joined_members_of(storage::ReadTxn& txn, std::string_view room_id,
                                                   std::string_view user_id) {
    auto m = txn.find_membership(room_id, user_id);
    if (!m) return m.error();
    if (!*m || (*m)->membership != "join") {
        return errors::forbidden("You are not joined to this room");
    }
    auto members = txn.room_members(room_id);
    if (!members) return members.error();
    std::vector<std::string> joined;
    for (auto& member : *members) {
        if (member.membership == "join") joined.push_back(std::move(member.user_id));
    }
    return joined;
}

}  // namespace

TypingService::TypingService(storage::Database& db, const Clock& clock)
    : shared_(std::make_shared<Shared>(db, clock)) {}

void TypingService::set_notifier(UserNotifier* notifier) { shared_->notifier = notifier; }

void TypingService::shutdown() {
    std::vector<std::shared_ptr<Shared::Timer>> pending;
    {
        std::lock_guard lock(shared_->timers_mutex);
        shared_->shut_down = true;
        for (auto& [id, weak] : shared_->timers) {
            if (auto timer = weak.lock()) pending.push_back(std::move(timer));
        }
        shared_->timers.clear();
    }
    // A timer is not thread-safe: each is cancelled on its own executor.
    for (const auto& timer : pending) {
        boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    }
}

TypingSet::Snapshot TypingService::snapshot(const std::vector<std::string>& room_ids) const {
    return shared_->set.snapshot(room_ids, shared_->clock.now_ms());
}

std::int64_t TypingService::first_serial() const { return shared_->set.first_serial(); }

boost::asio::awaitable<Result<void>> TypingService::set_typing(Actor actor, std::string room_id,
                                                               std::string user_id, bool typing,
                                                               std::chrono::milliseconds timeout) {
    if (user_id != actor.user_id) {
        co_return errors::forbidden("You may only set your own typing state");
    }
    auto job = [room_id, user_id](storage::ReadTxn& txn) {
        return joined_members_of(txn, room_id, user_id);
    };
    auto reading = storage::read<std::vector<std::string>>(shared_->db, std::move(job));
    auto members = co_await std::move(reading);
    if (!members) co_return members.error();

    timeout = std::clamp(timeout, std::chrono::milliseconds(0), kMaxTimeout);
    const std::int64_t now = shared_->clock.now_ms();
    const std::int64_t until = now + timeout.count();
    const bool changed = shared_->set.set(room_id, user_id, typing, now, until);
    // Local only: typing state is this process's own, other instances have nothing to send.
    if (changed) {
        if (UserNotifier* notifier = shared_->notifier.load()) notifier->notify_local(*members);
    }
    if (typing) {
        auto executor = co_await boost::asio::this_coro::executor;
        arm(shared_, executor, std::move(room_id), until);
    }
    co_return Result<void>{};
}

void TypingService::arm(const std::shared_ptr<Shared>& shared,
                        const boost::asio::any_io_executor& executor, std::string room_id,
                        std::int64_t until_ms) {
    const std::int64_t wait_ms = std::max<std::int64_t>(0, until_ms - shared->clock.now_ms());
    auto timer = std::make_shared<Shared::Timer>(executor, std::chrono::milliseconds(wait_ms));
    std::uint64_t id = 0;
    {
        std::lock_guard lock(shared->timers_mutex);
        if (shared->shut_down) return;
        id = shared->next_timer_id++;
        shared->timers.emplace(id, timer);
    }
    timer->async_wait([shared, executor, timer, id, room_id = std::move(room_id),
                       until_ms](const boost::system::error_code& ec) {
        {
            std::lock_guard lock(shared->timers_mutex);
            shared->timers.erase(id);
        }
        if (ec) return;  // cancelled: the server is stopping
        on_due(shared, executor, room_id, until_ms);
    });
}

void TypingService::on_due(const std::shared_ptr<Shared>& shared,
                           const boost::asio::any_io_executor& executor, const std::string& room_id,
                           std::int64_t until_ms) {
    const std::int64_t now = shared->clock.now_ms();
    auto expiry = shared->set.expire(room_id, now);
    if (expiry.changed) wake_members(shared, room_id);
    // The wall clock is behind the timer's steady clock: the user this timer was for is still
    // listed. Look again when the wall clock says so (a later renewal has its own timer).
    if (expiry.next_until_ms && *expiry.next_until_ms <= until_ms) {
        arm(shared, executor, room_id, *expiry.next_until_ms);
    }
}

void TypingService::wake_members(const std::shared_ptr<Shared>& shared, std::string room_id) {
    if (shared->notifier.load() == nullptr) return;
    shared->db.post_read([shared, room_id = std::move(room_id)](storage::ReadTxn* txn) {
        if (txn == nullptr) return;  // closed: nobody is waiting any more
        auto members = txn->room_members(room_id);
        if (!members) return;  // the members' long-polls answer at their timeout instead
        std::vector<std::string> joined;
        for (auto& m : *members) {
            if (m.membership == "join") joined.push_back(std::move(m.user_id));
        }
        if (UserNotifier* notifier = shared->notifier.load()) notifier->notify_local(joined);
    });
}

}  // namespace myelin::service
