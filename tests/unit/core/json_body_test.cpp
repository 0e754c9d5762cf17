#include <gtest/gtest.h>

#include "myelin/json/body.hpp"

namespace myelin::json {
namespace {

TEST(JsonBody, NotJsonIsMNotJson) {
    auto r = parse_object("not json");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errcode, "M_NOT_JSON");
    EXPECT_EQ(r.error().status, 400);
}

TEST(JsonBody, NonObjectIsMBadJson) {
    auto r = parse_object("[1,2]");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errcode, "M_BAD_JSON");
}

TEST(JsonBody, EmptyBodyOnlyWhenAllowed) {
    EXPECT_FALSE(parse_object(""));
    EXPECT_TRUE(parse_object("", true));
}

TEST(JsonBody, InvalidUtf8AndDeepNestingAreRejected) {
    EXPECT_FALSE(parse_object("{\"a\":\"\xff\"}"));
    std::string deep(100, '[');
    deep += std::string(100, ']');
    EXPECT_FALSE(parse_object("{\"a\":" + deep + "}"));
}

TEST(JsonBody, NulInAnyStringOrKeyIsMBadJson) {
    for (const char* body :
         {R"({"a":"x\u0000y"})", R"({"a\u0000":1})", R"({"a":{"b":["ok","\u0000"]}})"}) {
        auto r = parse_object(body);
        ASSERT_FALSE(r) << body;
        EXPECT_EQ(r.error().errcode, "M_BAD_JSON") << body;
    }
    // An escaped backslash followed by "u0000" is not a NUL.
    EXPECT_TRUE(parse_object(R"({"a":"\\u0000"})"));
}

TEST(JsonBody, TypedFields) {
    auto obj = *parse_object(R"({"s":"x","b":true,"n":5,"o":{}})");
    EXPECT_EQ(*required_string(obj, "s"), "x");
    EXPECT_EQ(required_string(obj, "missing").error().errcode, "M_MISSING_PARAM");
    EXPECT_EQ(required_string(obj, "n").error().errcode, "M_BAD_JSON");
    EXPECT_FALSE(optional_string(obj, "missing")->has_value());
    EXPECT_EQ(optional_bool(obj, "s").error().errcode, "M_BAD_JSON");
    EXPECT_TRUE(**optional_bool(obj, "b"));
    EXPECT_NE(*optional_object(obj, "o"), nullptr);
    EXPECT_EQ(optional_object(obj, "n").error().errcode, "M_BAD_JSON");
}

}  // namespace
}  // namespace myelin::json

#include <boost/json/parse.hpp>

#include "myelin/json/write.hpp"

namespace myelin::json {
namespace {

TEST(JsonWrite, AppendStringRoundTripsThroughAParser) {
    for (std::string_view s : {std::string_view("plain"), std::string_view("q\"uote\\back"),
                               std::string_view("ctl\n\t\x01\x1f"),
                               std::string_view("\xc3\xa9 utf8"), std::string_view("")}) {
        std::string out;
        append_string(out, s);
        auto parsed = boost::json::parse(out);
        ASSERT_TRUE(parsed.is_string()) << out;
        EXPECT_EQ(std::string_view(parsed.as_string()), s) << out;
    }
    // Every escapable byte at every position of an 8-byte word, between plain and UTF-8 text.
    for (std::size_t at = 0; at < 20; ++at) {
        if (at == 8 || at == 9) continue;  // the UTF-8 sequence stays whole
        for (char special : std::string_view("\"\\\n\x01\x1f", 5)) {
            std::string text = "abcdefgh\xc3\xa9ijklmnopqrstuv";
            text[at] = special;
            std::string out;
            append_string(out, text);
            auto parsed = boost::json::parse(out);
            ASSERT_TRUE(parsed.is_string()) << out;
            EXPECT_EQ(std::string_view(parsed.as_string()), text) << out;
        }
    }
    std::string out = "x";
    append_string(out,
                  "a\"b\\c\x01"
                  "d\ne");
    EXPECT_EQ(out, R"(x"a\"b\\c\u0001d\ne")");
}

}  // namespace
}  // namespace myelin::json
