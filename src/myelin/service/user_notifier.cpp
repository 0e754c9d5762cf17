#include "myelin/service/user_notifier.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace myelin::service {

std::uint64_t UserNotifier::counter_locked(const Entry& entry) const {
    return std::max(entry.counter, woke_all_at_);
}

std::uint64_t UserNotifier::counter(std::string_view user_id) const {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(std::string(user_id));
    return it == entries_.end() ? woke_all_at_ : counter_locked(it->second);
}

void UserNotifier::notify_locked(const std::string& user_id,
                                 std::vector<std::shared_ptr<Timer>>& woken) {
    Entry& entry = entries_[user_id];
    entry.counter = ++sequence_;
    for (auto& timer : entry.waiters) woken.push_back(std::move(timer));
    entry.waiters.clear();
}

void UserNotifier::take_all_waiters_locked(std::vector<std::shared_ptr<Timer>>& woken) {
    for (auto& [user_id, entry] : entries_) {
        for (auto& timer : entry.waiters) woken.push_back(std::move(timer));
        entry.waiters.clear();
    }
}

void UserNotifier::wake(const std::vector<std::shared_ptr<Timer>>& woken) {
    // Each timer belongs to its waiter's executor: the cancel runs there, after the waiter
    // suspended (see the header).
    for (const auto& timer : woken) {
        boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    }
}

void UserNotifier::notify(std::string_view user_id) {
    std::vector<std::string> user_ids{std::string(user_id)};
    notify(user_ids);
}

void UserNotifier::notify(const std::vector<std::string>& user_ids) {
    notify_local(user_ids);
    if (relay_ && !user_ids.empty()) relay_(user_ids);
}

void UserNotifier::notify_local(const std::vector<std::string>& user_ids) {
    std::vector<std::shared_ptr<Timer>> woken;
    {
        std::lock_guard lock(mutex_);
        for (const auto& user_id : user_ids) notify_locked(user_id, woken);
    }
    wake(woken);
}

void UserNotifier::wake_all() {
    std::vector<std::shared_ptr<Timer>> woken;
    {
        std::lock_guard lock(mutex_);
        woke_all_at_ = ++sequence_;
        take_all_waiters_locked(woken);
    }
    wake(woken);
}

boost::asio::awaitable<std::uint64_t> UserNotifier::wait(std::string user_id, std::uint64_t seen,
                                                         std::chrono::milliseconds timeout) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<Timer>(executor, timeout);
    {
        std::lock_guard lock(mutex_);
        Entry& entry = entries_[user_id];
        if (counter_locked(entry) != seen || shut_down_) co_return counter_locked(entry);
        entry.waiters.push_back(timer);
        ++waiting_;
    }
    boost::system::error_code ec;  // operation_aborted when woken early
    auto waited = timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    co_await std::move(waited);
    std::lock_guard lock(mutex_);
    --waiting_;
    Entry& entry = entries_[user_id];
    // Timed out: this waiter is still listed (a notification would have taken it).
    auto& waiters = entry.waiters;
    waiters.erase(std::remove(waiters.begin(), waiters.end(), timer), waiters.end());
    co_return counter_locked(entry);
}

void UserNotifier::shutdown() {
    std::vector<std::shared_ptr<Timer>> woken;
    {
        std::lock_guard lock(mutex_);
        shut_down_ = true;
        take_all_waiters_locked(woken);
    }
    wake(woken);
}

std::size_t UserNotifier::waiting() const {
    std::lock_guard lock(mutex_);
    return waiting_;
}

}  // namespace myelin::service
