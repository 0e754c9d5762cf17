#include "myelin/service/client_events.hpp"

#include <boost/json/parse.hpp>
#include <fmt/format.h>

namespace myelin::service {

Result<boost::json::object> stored_pdu(const storage::EventRecord& event) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(event.json, ec);
    if (ec || !v.is_object()) {
        return errors::internal(
            fmt::format("stored event {} is not a JSON object", event.event_id));
    }
    return std::move(v.as_object());
}

Result<boost::json::object> client_event(const storage::EventRecord& event,
                                         const boost::json::object* redacted_because) {
    auto pdu = stored_pdu(event);
    if (!pdu) return pdu.error();
    boost::json::object out;
    const boost::json::value* content = pdu->if_contains("content");
    out["content"] = content != nullptr && content->is_object()
                         ? *content
                         : boost::json::value(boost::json::object());
    out["event_id"] = event.event_id;
    out["origin_server_ts"] = event.origin_server_ts;
    out["room_id"] = event.room_id;
    out["sender"] = event.sender;
    out["type"] = event.type;
    if (event.state_key) out["state_key"] = *event.state_key;
    if (event.type == "m.room.redaction") {
        if (const auto* top = pdu->if_contains("redacts"); top != nullptr && top->is_string()) {
            out["redacts"] = *top;
        } else if (const auto* inner = out["content"].as_object().if_contains("redacts");
                   inner != nullptr && inner->is_string()) {
            out["redacts"] = *inner;
        }
    }
    boost::json::object unsigned_data;
    if (redacted_because != nullptr) unsigned_data["redacted_because"] = *redacted_because;
    out["unsigned"] = std::move(unsigned_data);
    return out;
}

}  // namespace myelin::service
