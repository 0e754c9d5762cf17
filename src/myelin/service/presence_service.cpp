#include "myelin/service/presence_service.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

bool is_presence_state(std::string_view s) {
    return s == "online" || s == "unavailable" || s == "offline";
}

// Whether the two users are both joined to at least one room. Errors: 503.
Result<bool> share_joined_room(storage::ReadTxn& txn, const std::string& a, const std::string& b) {
    auto mine = txn.user_memberships(a);
    if (!mine) return mine.error();
    auto theirs = txn.user_memberships(b);
    if (!theirs) return theirs.error();
    std::vector<std::string> joined;
    for (const auto& m : *mine) {
        if (m.membership == "join") joined.push_back(m.room_id);
    }
    std::sort(joined.begin(), joined.end());
    for (const auto& m : *theirs) {
        if (m.membership == "join" && std::binary_search(joined.begin(), joined.end(), m.room_id)) {
            return true;
        }
    }
    return false;
}

}  // namespace

Result<void> PresenceService::set(const std::string& user_id, std::string_view presence,
                                  std::optional<std::string> status_msg) {
    if (!is_presence_state(presence)) {
        return errors::invalid_param("presence must be online, unavailable or offline");
    }
    if (status_msg && status_msg->size() > kMaxStatusMsgBytes) {
        return errors::invalid_param("status_msg is too long");
    }
    const std::int64_t now = clock_.now_ms();
    std::lock_guard lock(mutex_);
    Entry& e = entries_[user_id];
    e.presence = std::string(presence);
    e.status_msg = std::move(status_msg);
    if (presence == "online") e.last_active_ms = now;
    return {};
}

PresenceView PresenceService::view(const std::string& user_id) const {
    const std::int64_t now = clock_.now_ms();
    PresenceView v;
    std::lock_guard lock(mutex_);
    auto it = entries_.find(user_id);
    if (it == entries_.end()) return v;
    const Entry& e = it->second;
    v.presence = e.presence;
    v.status_msg = e.status_msg;
    if (e.last_active_ms) {
        const std::int64_t ago = std::max<std::int64_t>(0, now - *e.last_active_ms);
        v.last_active_ago = ago;
        if (e.presence == "online") {
            if (ago > kIdleAfter.count()) v.presence = "unavailable";
            v.currently_active = ago <= kActiveWindow.count();
        }
    }
    return v;
}

boost::asio::awaitable<Result<PresenceView>> PresenceService::view_for(std::string viewer,
                                                                       std::string target) {
    auto job = [viewer = std::move(viewer), target](storage::ReadTxn& txn) -> Result<void> {
        auto user = txn.find_user(target);
        if (!user) return user.error();
        if (!*user) return errors::not_found("No such user");
        if (viewer == target) return {};
        auto shared = share_joined_room(txn, viewer, target);
        if (!shared) return shared.error();
        if (!*shared) return errors::forbidden("You do not share a room with this user");
        return {};
    };
    auto op = storage::read<void>(db_, std::move(job));
    auto allowed = co_await std::move(op);
    if (!allowed) co_return allowed.error();
    co_return view(target);
}

}  // namespace myelin::service
