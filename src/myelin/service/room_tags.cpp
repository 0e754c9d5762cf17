#include "myelin/service/room_tags.hpp"

#include <boost/json.hpp>

namespace myelin::service {
namespace {

// The stored content as an object ({} when absent or not a JSON object).
boost::json::object stored_object(const std::optional<std::string>& stored) {
    if (!stored) return {};
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(*stored, ec);
    if (ec || !v.is_object()) return {};
    return std::move(v.as_object());
}

// The `tags` member of `content`, made an object if it is missing or not one.
boost::json::object& tags_member(boost::json::object& content) {
    boost::json::value& tags = content["tags"];
    if (!tags.is_object()) tags = boost::json::object{};
    return tags.as_object();
}

}  // namespace

Result<void> check_tag_name(std::string_view tag) {
    if (tag.empty() || tag.size() > kMaxTagNameBytes) {
        return errors::invalid_param("A tag name must be 1 to 255 bytes");
    }
    for (unsigned char c : tag) {
        if (c < 0x20 || c == 0x7f) return errors::invalid_param("Invalid tag name");
    }
    return {};
}

Result<void> check_tag_content(const boost::json::object& content) {
    if (const auto* order = content.if_contains("order"); order != nullptr) {
        if (!order->is_number()) return errors::bad_json("order must be a number");
        const double value = order->to_number<double>();
        if (!(value >= 0.0 && value <= 1.0)) {
            return errors::invalid_param("order must be between 0 and 1");
        }
    }
    if (boost::json::serialize(content).size() > kMaxTagContentBytes) {
        return errors::invalid_param("The tag's content is too large");
    }
    return {};
}

boost::json::object tags_of(const std::optional<std::string>& stored) {
    boost::json::object content = stored_object(stored);
    boost::json::object answer;
    answer["tags"] = std::move(tags_member(content));
    return answer;
}

Result<std::optional<std::string>> with_tag(const std::optional<std::string>& stored,
                                            const std::string& tag,
                                            const boost::json::object& content) {
    boost::json::object all = stored_object(stored);
    boost::json::object& tags = tags_member(all);
    const auto* existing = tags.if_contains(tag);
    if (existing != nullptr && *existing == content && stored) return std::nullopt;
    if (existing == nullptr && tags.size() >= kMaxTagsPerRoom) {
        return errors::invalid_param("A room can have at most 100 tags");
    }
    tags[tag] = content;
    return std::optional<std::string>(boost::json::serialize(all));
}

std::optional<std::string> without_tag(const std::optional<std::string>& stored,
                                       const std::string& tag) {
    boost::json::object all = stored_object(stored);
    boost::json::object& tags = tags_member(all);
    if (!tags.contains(tag)) return std::nullopt;
    tags.erase(tag);
    return boost::json::serialize(all);
}

}  // namespace myelin::service
