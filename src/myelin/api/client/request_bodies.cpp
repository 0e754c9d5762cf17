#include "myelin/api/client/request_bodies.hpp"

#include <utility>

#include "myelin/json/body.hpp"

namespace myelin::api::client {
namespace {

constexpr std::size_t kMaxDeviceIdBytes = 255;
// Synapse's limit, so that names clients set there fit here too.
constexpr std::size_t kMaxDeviceDisplayNameCodePoints = 100;

// The byte length of the first `max_code_points` code points of valid UTF-8 `text`.
std::size_t prefix_of_code_points(std::string_view text, std::size_t max_code_points) {
    std::size_t seen = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const bool starts_code_point = (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
        if (starts_code_point && seen++ == max_code_points) return i;
    }
    return text.size();
}

// `initial_device_display_name` of a login or registration: one that is too long is cut to
// the limit rather than failing the sign-in over a label.
Result<std::optional<std::string>> initial_device_display_name(const boost::json::object& body) {
    auto name = json::optional_string(body, "initial_device_display_name");
    if (!name) return name.error();
    if (*name) (*name)->resize(prefix_of_code_points(**name, kMaxDeviceDisplayNameCodePoints));
    return name;
}

Result<std::optional<std::string>> optional_device_id(const boost::json::object& body) {
    auto id = json::optional_string(body, "device_id");
    if (!id) return id.error();
    if (*id && ((*id)->empty() || (*id)->size() > kMaxDeviceIdBytes)) {
        return errors::invalid_param("'device_id' must be 1 to 255 bytes");
    }
    return id;
}

// The user named by a login body: identifier {type: m.id.user, user} or the legacy `user`.
Result<std::string> login_user(const boost::json::object& body) {
    auto identifier = json::optional_object(body, "identifier");
    if (!identifier) return identifier.error();
    if (*identifier) {
        auto type = json::required_string(**identifier, "type");
        if (!type) return type.error();
        if (*type == "m.id.user") return json::required_string(**identifier, "user");
        if (*type == "m.id.thirdparty" || *type == "m.id.phone") {
            // No third-party identifiers are bound on this server.
            return errors::forbidden("Invalid username or password");
        }
        return errors::make(400, "M_UNKNOWN", "Unknown identifier type");
    }
    auto user = json::optional_string(body, "user");
    if (!user) return user.error();
    if (!*user) return errors::missing_param("Missing 'identifier'");
    return std::move(**user);
}

// The UIA `auth` object of `body`, copied out; nullopt when absent or null.
Result<std::optional<boost::json::object>> optional_auth(const boost::json::object& body) {
    auto auth = json::optional_object(body, "auth");
    if (!auth) return auth.error();
    if (!*auth) return std::optional<boost::json::object>{};
    return std::optional<boost::json::object>(**auth);
}

}  // namespace

Result<service::LoginRequest> decode_login(std::string_view body_text) {
    auto body = json::parse_object(body_text);
    if (!body) return body.error();
    auto type = json::required_string(*body, "type");
    if (!type) return type.error();
    if (*type != "m.login.password") return errors::make(400, "M_UNKNOWN", "Bad login type");
    service::LoginRequest request;
    auto user = login_user(*body);
    if (!user) return user.error();
    request.user = std::move(*user);
    auto password = json::required_string(*body, "password");
    if (!password) return password.error();
    request.password = std::move(*password);
    auto device_id = optional_device_id(*body);
    if (!device_id) return device_id.error();
    request.device_id = std::move(*device_id);
    auto display_name = initial_device_display_name(*body);
    if (!display_name) return display_name.error();
    request.initial_device_display_name = std::move(*display_name);
    auto refresh = json::optional_bool(*body, "refresh_token");
    if (!refresh) return refresh.error();
    request.refresh_token = refresh->value_or(false);
    return request;
}

Result<service::RegistrationRequest> decode_register(std::optional<std::string_view> kind,
                                                     std::string_view body_text) {
    service::RegistrationRequest request;
    if (kind && *kind != "user" && *kind != "guest") {
        return errors::invalid_param("'kind' must be 'user' or 'guest'");
    }
    request.guest = kind && *kind == "guest";
    auto body = json::parse_object(body_text);
    if (!body) return body.error();
    auto display_name = initial_device_display_name(*body);
    if (!display_name) return display_name.error();
    request.initial_device_display_name = std::move(*display_name);
    if (request.guest) return request;
    auto username = json::optional_string(*body, "username");
    if (!username) return username.error();
    request.username = std::move(*username);
    auto password = json::optional_string(*body, "password");
    if (!password) return password.error();
    request.password = std::move(*password);
    auto device_id = optional_device_id(*body);
    if (!device_id) return device_id.error();
    request.device_id = std::move(*device_id);
    auto inhibit = json::optional_bool(*body, "inhibit_login");
    if (!inhibit) return inhibit.error();
    request.inhibit_login = inhibit->value_or(false);
    auto refresh = json::optional_bool(*body, "refresh_token");
    if (!refresh) return refresh.error();
    request.refresh_token = refresh->value_or(false);
    auto auth = optional_auth(*body);
    if (!auth) return auth.error();
    request.auth = std::move(*auth);
    return request;
}

Result<std::string> decode_refresh(std::string_view body_text) {
    auto body = json::parse_object(body_text);
    if (!body) return body.error();
    return json::required_string(*body, "refresh_token");
}

Result<PasswordChangeBody> decode_password_change(std::string_view body_text,
                                                  std::size_t max_password_bytes) {
    auto body = json::parse_object(body_text);
    if (!body) return body.error();
    PasswordChangeBody out;
    auto new_password = json::required_string(*body, "new_password");
    if (!new_password) return new_password.error();
    if (new_password->size() > max_password_bytes) {
        return errors::invalid_param("Password too long (max " +
                                     std::to_string(max_password_bytes) + " bytes)");
    }
    out.new_password = std::move(*new_password);
    auto logout_devices = json::optional_bool(*body, "logout_devices");
    if (!logout_devices) return logout_devices.error();
    out.logout_devices = logout_devices->value_or(true);
    auto auth = optional_auth(*body);
    if (!auth) return auth.error();
    out.auth = std::move(*auth);
    return out;
}

Result<DeactivateBody> decode_deactivate(std::string_view body_text) {
    auto body = json::parse_object(body_text, true);
    if (!body) return body.error();
    DeactivateBody out;
    auto id_server = json::optional_string(*body, "id_server");
    if (!id_server) return id_server.error();
    out.id_server = std::move(*id_server);
    auto erase = json::optional_bool(*body, "erase");
    if (!erase) return erase.error();
    out.erase = *erase;
    auto auth = optional_auth(*body);
    if (!auth) return auth.error();
    out.auth = std::move(*auth);
    return out;
}

Result<std::optional<std::string>> decode_device_update(std::string_view body_text) {
    auto body = json::parse_object(body_text, true);
    if (!body) return body.error();
    auto name = json::optional_string(*body, "display_name");
    if (!name) return name.error();
    if (*name && prefix_of_code_points(**name, kMaxDeviceDisplayNameCodePoints) < (*name)->size()) {
        return errors::make(400, "M_TOO_LARGE",
                            "'display_name' must be at most 100 characters (Unicode code points)");
    }
    return name;
}

Result<std::optional<boost::json::object>> decode_device_delete(std::string_view body_text) {
    auto body = json::parse_object(body_text, true);
    if (!body) return body.error();
    return optional_auth(*body);
}

Result<DeleteDevicesBody> decode_delete_devices(std::string_view body_text) {
    auto body = json::parse_object(body_text);
    if (!body) return body.error();
    const auto* listed = body->if_contains("devices");
    if (!listed || listed->is_null()) return errors::missing_param("Missing 'devices'");
    if (!listed->is_array()) return errors::bad_json("'devices' must be an array of strings");
    DeleteDevicesBody out;
    out.devices.reserve(listed->as_array().size());
    for (const auto& v : listed->as_array()) {
        if (!v.is_string()) return errors::bad_json("'devices' must be an array of strings");
        out.devices.emplace_back(v.as_string());
    }
    auto auth = optional_auth(*body);
    if (!auth) return auth.error();
    out.auth = std::move(*auth);
    return out;
}

}  // namespace myelin::api::client
