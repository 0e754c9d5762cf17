#include "myelin/service/room_sharers.hpp"

#include <set>
#include <utility>

namespace myelin::service {

Result<void> add_room_sharers(storage::ReadTxn& txn, const std::string& user_id,
                              std::vector<std::string>& out) {
    std::set<std::string> users(out.begin(), out.end());
    users.insert(user_id);
    auto memberships = txn.user_memberships(user_id);
    if (!memberships) return memberships.error();
    for (const auto& m : *memberships) {
        if (m.membership != "join") continue;
        auto members = txn.room_members(m.room_id);
        if (!members) return members.error();
        for (auto& member : *members) {
            if (member.membership == "join") users.insert(std::move(member.user_id));
        }
    }
    out.assign(users.begin(), users.end());
    return {};
}

}  // namespace myelin::service
