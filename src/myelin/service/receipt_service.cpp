#include "myelin/service/receipt_service.hpp"

#include <memory>
#include <utility>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "myelin/service/client_events.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {

namespace {

using boost::json::object;

// Whether `event` belongs to the thread `thread_id` (an event ID): it is the thread's root or
// relates to it with rel_type m.thread.
Result<bool> in_thread(const storage::EventRecord& event, std::string_view thread_id) {
    if (event.event_id == thread_id) return true;
    auto pdu = stored_pdu(event);
    if (!pdu) return pdu.error();
    const auto* content = pdu->if_contains("content");
    if (content == nullptr || !content->is_object()) return false;
    const auto* rel = content->get_object().if_contains("m.relates_to");
    if (rel == nullptr || !rel->is_object()) return false;
    const auto& r = rel->get_object();
    const auto* type = r.if_contains("rel_type");
    const auto* id = r.if_contains("event_id");
    return type != nullptr && id != nullptr && type->is_string() && id->is_string() &&
           type->get_string() == "m.thread" && id->get_string() == thread_id;
}

// The stream ordering of the event the user's read marker is at in the room (0: none).
Result<std::int64_t> read_marker_position(storage::ReadTxn& txn, std::string_view user_id,
                                          std::string_view room_id) {
    auto stored = txn.find_account_data(user_id, room_id, "m.fully_read");
    if (!stored) return stored.error();
    if (!*stored) return std::int64_t{0};
    boost::system::error_code ec;
    auto value = boost::json::parse((*stored)->content, ec);
    if (ec || !value.is_object()) return std::int64_t{0};
    const auto* id = value.get_object().if_contains("event_id");
    if (id == nullptr || !id->is_string()) return std::int64_t{0};
    auto event = txn.find_event(id->get_string());
    if (!event) return event.error();
    if (!*event || (*event)->room_id != room_id) return std::int64_t{0};
    return (*event)->stream_ordering;
}

// Who to wake after the commit: set by the write job.
struct Wake {
    bool members = false;  // an m.read receipt changed: the room's joined members
    bool self = false;     // a private receipt or the read marker changed: the user
    std::vector<std::string> joined;
};

}  // namespace

boost::asio::awaitable<Result<void>> ReceiptService::mark(Actor actor, std::string room_id,
                                                          std::vector<ReadMarker> markers) {
    auto wake = std::make_shared<Wake>();
    const std::int64_t now = clock_.now_ms();
    auto job = [actor, room_id = std::move(room_id), markers = std::move(markers), wake,
                now](storage::WriteTxn& txn) -> Result<void> {
        *wake = Wake{};  // a PostgreSQL job may run again after a conflict
        auto m = txn.find_membership(room_id, actor.user_id);
        if (!m) return m.error();
        if (!*m || (*m)->membership != "join") {
            return errors::forbidden("You are not joined to this room");
        }
        for (const auto& marker : markers) {
            auto event = txn.find_event(marker.event_id);
            if (!event) return event.error();
            if (!*event || (*event)->room_id != room_id) {
                return errors::not_found("Unknown event " + marker.event_id + " in this room");
            }
            if (marker.type == "m.fully_read") {
                auto at = read_marker_position(txn, actor.user_id, room_id);
                if (!at) return at.error();
                if (*at >= (*event)->stream_ordering) continue;  // only moves forward
                const std::string content =
                    boost::json::serialize(object{{"event_id", marker.event_id}});
                auto put = txn.put_account_data(actor.user_id, room_id, "m.fully_read", content);
                if (!put) return put.error();
                wake->self = true;
                continue;
            }
            if (!marker.thread_id.empty() && marker.thread_id != "main") {
                auto inside = in_thread(**event, marker.thread_id);
                if (!inside) return inside.error();
                if (!*inside) {
                    return errors::invalid_param("The event is not in the thread " +
                                                 marker.thread_id);
                }
            }
            storage::ReceiptRecord r;
            r.room_id = room_id;
            r.user_id = actor.user_id;
            r.receipt_type = marker.type;
            r.thread_id = marker.thread_id;
            r.event_id = marker.event_id;
            r.event_stream_ordering = (*event)->stream_ordering;
            r.ts = now;
            auto put = txn.put_receipt(r);
            if (!put) return put.error();
            if (!*put) continue;  // not after the stored receipt: ignored
            if (marker.type == "m.read") {
                wake->members = true;
            } else {
                wake->self = true;
            }
        }
        if (wake->members) {
            auto members = txn.room_members(room_id);
            if (!members) return members.error();
            for (auto& member : *members) {
                if (member.membership == "join") wake->joined.push_back(std::move(member.user_id));
            }
        } else if (wake->self) {
            wake->joined.push_back(actor.user_id);
        }
        return {};
    };
    UserNotifier* notifier = notifier_;
    auto after_commit = [notifier, wake] {
        if (notifier != nullptr && !wake->joined.empty()) notifier->notify(wake->joined);
    };
    return storage::write<void>(db_, std::move(job), std::move(after_commit),
                                storage::kReceiptsCounter);
}

}  // namespace myelin::service
