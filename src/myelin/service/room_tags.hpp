#pragma once

// Room tags (tags.yaml) as the room account data `m.tag`, content {"tags": {tag: {order?}}}.
// Pure functions over that content, used inside the account-data write job (so that adding or
// removing one tag is one read-modify-write and concurrent changes of two tags both stay).
// Thread-safe (no state).

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>

#include "myelin/core/error.hpp"

namespace myelin::service {

inline constexpr std::string_view kRoomTagsType = "m.tag";
// At most this many bytes in a tag name, tags per room, and bytes of one tag's serialized
// content (a tag carries an `order`; the bounds keep m.tag, which every sync may carry, small).
inline constexpr std::size_t kMaxTagNameBytes = 255;
inline constexpr std::size_t kMaxTagsPerRoom = 100;
inline constexpr std::size_t kMaxTagContentBytes = 1024;

// Checks a tag name from the path. Errors: 400 M_INVALID_PARAM (empty, longer than
// kMaxTagNameBytes, or with control characters).
Result<void> check_tag_name(std::string_view tag);

// Checks a tag's content (the PUT body): a JSON object whose `order`, when present, is a number
// in [0, 1], at most kMaxTagContentBytes serialized. Errors: 400 M_BAD_JSON (order not a
// number), 400 M_INVALID_PARAM (order out of range, too large).
Result<void> check_tag_content(const boost::json::object& content);

// The {"tags": {...}} answer of GET …/tags from the stored m.tag content (nullopt: none stored).
// Stored content that is not valid JSON or whose `tags` is not an object answers {"tags": {}}.
boost::json::object tags_of(const std::optional<std::string>& stored);

// The m.tag content with `tag` set to `content`, or nullopt when that changes nothing. Keys of
// the stored content other than `tags` are kept. Errors: 400 M_INVALID_PARAM when the room
// would have more than kMaxTagsPerRoom tags.
Result<std::optional<std::string>> with_tag(const std::optional<std::string>& stored,
                                            const std::string& tag,
                                            const boost::json::object& content);

// The m.tag content without `tag`, or nullopt when the tag is not there (nothing to write).
std::optional<std::string> without_tag(const std::optional<std::string>& stored,
                                       const std::string& tag);

}  // namespace myelin::service
