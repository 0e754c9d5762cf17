#include "myelin/events/identifiers.hpp"

namespace myelin::events {

std::string_view server_name_of(std::string_view id) noexcept {
    const auto colon = id.find(':');
    return colon == std::string_view::npos ? std::string_view() : id.substr(colon + 1);
}

bool is_valid_server_name(std::string_view name) noexcept {
    std::string_view host = name;
    // Port: after the last ':' outside an IPv6 literal.
    const auto bracket = name.rfind(']');
    const auto colon = name.rfind(':');
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
        const std::string_view port = name.substr(colon + 1);
        if (port.empty() || port.size() > 5) return false;
        for (const char c : port) {
            if (c < '0' || c > '9') return false;
        }
        host = name.substr(0, colon);
    }
    if (host.empty() || host.size() > 255) return false;
    if (host.front() == '[') {
        if (host.back() != ']' || host.size() < 3) return false;
        for (const char c : host.substr(1, host.size() - 2)) {
            const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                            (c >= 'A' && c <= 'F') || c == ':' || c == '.';
            if (!ok) return false;
        }
        return true;
    }
    for (const char c : host) {
        const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                        (c >= 'A' && c <= 'Z') || c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

bool is_valid_user_id(std::string_view id) noexcept {
    if (id.size() < 4 || id.size() > 255 || id.front() != '@') return false;
    const auto colon = id.find(':');
    if (colon == std::string_view::npos || colon == 1) return false;
    for (const char c : id.substr(1, colon - 1)) {
        if (c < 0x21 || c > 0x7E) return false;
    }
    return is_valid_server_name(id.substr(colon + 1));
}

}  // namespace myelin::events
