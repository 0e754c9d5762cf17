#include "myelin/service/user_ids.hpp"

#include <sodium.h>

namespace myelin::service {
namespace {

bool localpart_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '=' ||
           c == '-' || c == '/' || c == '+';
}

std::string random_string(std::string_view alphabet, std::size_t length) {
    std::string out(length, ' ');
    for (auto& c : out) {
        c = alphabet[randombytes_uniform(static_cast<std::uint32_t>(alphabet.size()))];
    }
    return out;
}

}  // namespace

std::string make_user_id(std::string_view localpart, std::string_view server_name) {
    std::string out;
    out.reserve(localpart.size() + server_name.size() + 2);
    out += '@';
    out += localpart;
    out += ':';
    out += server_name;
    return out;
}

Result<std::string> localpart_for_registration(std::string_view username,
                                               std::string_view server_name) {
    if (username.empty()) return errors::make(400, "M_INVALID_USERNAME", "Username is empty");
    std::string localpart;
    localpart.reserve(username.size());
    for (char c : username) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (!localpart_char(c)) {
            return errors::make(400, "M_INVALID_USERNAME",
                                "User ID can only contain characters a-z, 0-9, or '=_-./+'");
        }
        localpart += c;
    }
    if (make_user_id(localpart, server_name).size() > 255) {
        return errors::make(400, "M_INVALID_USERNAME", "User ID may not be longer than 255 bytes");
    }
    return localpart;
}

Result<std::string> user_id_for_login(std::string_view user, std::string_view server_name) {
    std::string_view localpart = user;
    if (!user.empty() && user.front() == '@') {
        auto colon = user.find(':');
        if (colon == std::string_view::npos || user.substr(colon + 1) != server_name) {
            return errors::forbidden("Invalid username or password");
        }
        localpart = user.substr(1, colon - 1);
    }
    std::string lowered;
    lowered.reserve(localpart.size());
    for (char c : localpart) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        lowered += c;
    }
    if (lowered.empty() || lowered.size() > 255) {
        return errors::forbidden("Invalid username or password");
    }
    return make_user_id(lowered, server_name);
}

std::string generate_device_id() { return random_string("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10); }

std::string generate_localpart() {
    return random_string("abcdefghijklmnopqrstuvwxyz0123456789", 12);
}

}  // namespace myelin::service
