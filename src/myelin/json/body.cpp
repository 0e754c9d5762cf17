#include "myelin/json/body.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>

namespace myelin::json {
namespace {

Error wrong_type(std::string_view key, std::string_view expected) {
    return errors::bad_json("'" + std::string(key) + "' must be " + std::string(expected));
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Whether any string in `value`, object keys included, holds U+0000. The parser's depth limit
// bounds the recursion.
bool holds_nul(const boost::json::value& value) {
    switch (value.kind()) {
        case boost::json::kind::string:
            return has_nul(value.get_string());
        case boost::json::kind::array:
            for (const auto& item : value.get_array()) {
                if (holds_nul(item)) return true;
            }
            return false;
        case boost::json::kind::object:
            for (const auto& [key, item] : value.get_object()) {
                if (has_nul(key) || holds_nul(item)) return true;
            }
            return false;
        default:
            return false;
    }
}

}  // namespace

Result<boost::json::object> parse_object(std::string_view body, bool empty_is_object) {
    if (body.empty() && empty_is_object) return boost::json::object{};
    boost::system::error_code ec;
    boost::json::parse_options options;
    options.max_depth = 32;
    boost::json::value value = boost::json::parse(body, ec, {}, options);
    if (ec) return errors::not_json("Content not JSON.");
    if (!value.is_object()) return errors::bad_json("The request body must be a JSON object");
    if (holds_nul(value)) return errors::bad_json("Strings may not contain U+0000");
    return std::move(value.as_object());
}

Result<std::string> required_string(const boost::json::object& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) {
        return errors::missing_param("Missing '" + std::string(key) + "'");
    }
    if (!it->value().is_string()) return wrong_type(key, "a string");
    return std::string(it->value().as_string());
}

Result<std::optional<std::string>> optional_string(const boost::json::object& obj,
                                                   std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) return std::optional<std::string>{};
    if (!it->value().is_string()) return wrong_type(key, "a string");
    return std::optional<std::string>(std::string(it->value().as_string()));
}

Result<std::optional<bool>> optional_bool(const boost::json::object& obj, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) return std::optional<bool>{};
    if (!it->value().is_bool()) return wrong_type(key, "a boolean");
    return std::optional<bool>(it->value().as_bool());
}

Result<const boost::json::object*> optional_object(const boost::json::object& obj,
                                                   std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->value().is_null()) {
        return static_cast<const boost::json::object*>(nullptr);
    }
    if (!it->value().is_object()) return wrong_type(key, "an object");
    return &it->value().as_object();
}

}  // namespace myelin::json
