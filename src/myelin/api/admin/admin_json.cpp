#include "myelin/api/admin/admin_json.hpp"

namespace myelin::api::admin {
namespace bj = boost::json;

bj::object user_json(const storage::UserRecord& user) {
    return bj::object{{"user_id", user.user_id},
                      {"admin", user.is_admin},
                      {"deactivated", user.deactivated},
                      {"guest", user.is_guest},
                      {"has_password", !user.password_hash.empty()},
                      {"created_ts", user.created_ts}};
}

bj::object device_json(const storage::DeviceRecord& device) {
    bj::object o;
    o["device_id"] = device.device_id;
    if (device.display_name) {
        o["display_name"] = *device.display_name;
    } else {
        o["display_name"] = nullptr;
    }
    o["created_ts"] = device.created_ts;
    if (device.last_seen_ts > 0) {
        o["last_seen_ts"] = device.last_seen_ts;
        o["last_seen_ip"] = device.last_seen_ip;
    } else {
        o["last_seen_ts"] = nullptr;
        o["last_seen_ip"] = nullptr;
    }
    return o;
}

bj::object registration_token_json(const storage::RegistrationTokenRecord& token) {
    bj::object o;
    o["token"] = token.token;
    if (token.uses_allowed) {
        o["uses_allowed"] = *token.uses_allowed;
    } else {
        o["uses_allowed"] = nullptr;
    }
    o["pending"] = token.pending;
    o["completed"] = token.completed;
    if (token.expiry_ts > 0) {
        o["expiry_time"] = token.expiry_ts;
    } else {
        o["expiry_time"] = nullptr;
    }
    return o;
}

bj::object security_event_json(const storage::SecurityEventRecord& event) {
    bj::object o{{"id", event.id}, {"ts", event.ts}, {"kind", event.kind}};
    if (event.device_id.empty()) {
        o["device_id"] = nullptr;
    } else {
        o["device_id"] = event.device_id;
    }
    o["detail"] = event.detail;
    return o;
}

}  // namespace myelin::api::admin
