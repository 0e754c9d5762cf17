// The m.tag content functions (service/room_tags.hpp): tag names and contents are checked, a tag
// is added, replaced and removed without touching the other tags or other keys of the content,
// unchanged content writes nothing, a room holds at most kMaxTagsPerRoom tags, and malformed
// stored content reads as no tags.

#include "myelin/service/room_tags.hpp"

#include <string>

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace myelin::service {
namespace {

boost::json::object obj(const std::string& text) { return boost::json::parse(text).as_object(); }

TEST(RoomTags, TagNamesAreBounded) {
    EXPECT_TRUE(check_tag_name("m.favourite"));
    EXPECT_TRUE(check_tag_name(std::string(255, 't')));
    EXPECT_EQ(check_tag_name(std::string(256, 't')).error().errcode, "M_INVALID_PARAM");
    EXPECT_FALSE(check_tag_name(""));
    EXPECT_FALSE(check_tag_name("a\nb"));
}

TEST(RoomTags, OrderMustBeANumberBetweenZeroAndOne) {
    EXPECT_TRUE(check_tag_content(obj("{}")));
    EXPECT_TRUE(check_tag_content(obj(R"({"order":0})")));
    EXPECT_TRUE(check_tag_content(obj(R"({"order":1})")));
    EXPECT_TRUE(check_tag_content(obj(R"({"order":0.5,"x":true})")));
    EXPECT_EQ(check_tag_content(obj(R"({"order":1.01})")).error().errcode, "M_INVALID_PARAM");
    EXPECT_EQ(check_tag_content(obj(R"({"order":-1})")).error().errcode, "M_INVALID_PARAM");
    EXPECT_EQ(check_tag_content(obj(R"({"order":"0.5"})")).error().errcode, "M_BAD_JSON");
    EXPECT_EQ(check_tag_content(obj(R"({"order":null})")).error().errcode, "M_BAD_JSON");
    boost::json::object big{{"x", std::string(kMaxTagContentBytes, 'a')}};
    EXPECT_EQ(check_tag_content(big).error().errcode, "M_INVALID_PARAM");
}

TEST(RoomTags, AddReplaceRemoveKeepTheOthers) {
    auto first = with_tag(std::nullopt, "u.a", obj(R"({"order":0.5})"));
    ASSERT_TRUE(first && *first);
    EXPECT_EQ(obj(**first), obj(R"({"tags":{"u.a":{"order":0.5}}})"));

    const std::string stored = R"({"tags":{"u.a":{"order":0.5}},"other":1})";
    auto second = with_tag(stored, "u.b", obj("{}"));
    ASSERT_TRUE(second && *second);
    EXPECT_EQ(obj(**second), obj(R"({"tags":{"u.a":{"order":0.5},"u.b":{}},"other":1})"));
    auto replaced = with_tag(**second, "u.a", obj(R"({"order":1})"));
    ASSERT_TRUE(replaced && *replaced);
    EXPECT_EQ(obj(**replaced), obj(R"({"tags":{"u.a":{"order":1},"u.b":{}},"other":1})"));

    auto same = with_tag(stored, "u.a", obj(R"({"order":0.5})"));
    ASSERT_TRUE(same);
    EXPECT_FALSE(*same);  // nothing to write

    auto removed = without_tag(**replaced, "u.a");
    ASSERT_TRUE(removed);
    EXPECT_EQ(obj(*removed), obj(R"({"tags":{"u.b":{}},"other":1})"));
    EXPECT_FALSE(without_tag(**replaced, "u.none"));
    EXPECT_FALSE(without_tag(std::nullopt, "u.a"));
}

TEST(RoomTags, AtMostOneHundredTags) {
    std::optional<std::string> stored;
    for (std::size_t i = 0; i < kMaxTagsPerRoom; ++i) {
        auto next = with_tag(stored, "u." + std::to_string(i), obj("{}"));
        ASSERT_TRUE(next && *next);
        stored = **next;
    }
    EXPECT_EQ(with_tag(stored, "u.more", obj("{}")).error().errcode, "M_INVALID_PARAM");
    auto change = with_tag(stored, "u.3", obj(R"({"order":0.1})"));
    EXPECT_TRUE(change && *change);
}

TEST(RoomTags, MalformedStoredContentReadsAsNoTags) {
    EXPECT_EQ(tags_of(std::nullopt), obj(R"({"tags":{}})"));
    EXPECT_EQ(tags_of(std::string("not json")), obj(R"({"tags":{}})"));
    EXPECT_EQ(tags_of(std::string(R"({"tags":5})")), obj(R"({"tags":{}})"));
    EXPECT_EQ(tags_of(std::string(R"({"tags":{"u.a":{}},"x":1})")), obj(R"({"tags":{"u.a":{}}})"));
    auto fixed = with_tag(std::string(R"({"tags":[1]})"), "u.a", obj("{}"));
    ASSERT_TRUE(fixed && *fixed);
    EXPECT_EQ(obj(**fixed), obj(R"({"tags":{"u.a":{}}})"));
}

}  // namespace
}  // namespace myelin::service
