#include "myelin/api/client/own_user.hpp"

#include <utility>

namespace myelin::api::client {
namespace {

bool has_control_characters(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f) return true;
    }
    return false;
}

}  // namespace

Result<void> require_own_user(const RequestContext& ctx, std::string_view user_id) {
    if (ctx.identity == nullptr || ctx.identity->user_id() != user_id) {
        return errors::forbidden("Cannot do this for another user");
    }
    return {};
}

bool is_room_id_shaped(std::string_view room_id) {
    return room_id.size() >= 2 && room_id.size() <= 255 && room_id.front() == '!' &&
           !has_control_characters(room_id);
}

bool is_user_id_shaped(std::string_view user_id) {
    auto colon = user_id.find(':');
    return user_id.size() <= 255 && user_id.size() >= 4 && user_id.front() == '@' &&
           colon != std::string_view::npos && colon > 1 && colon + 1 < user_id.size() &&
           !has_control_characters(user_id);
}

http::Response raw_json_response(std::string json) {
    http::Response response;
    response.body = std::move(json);
    return response;
}

}  // namespace myelin::api::client
