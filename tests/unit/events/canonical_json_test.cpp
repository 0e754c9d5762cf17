#include "myelin/events/canonical_json.hpp"

#include <string>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "myelin/events/base64.hpp"

namespace myelin::events {
namespace {

namespace json = boost::json;

std::string canonical(std::string_view text) {
    auto r = encode_canonical_json(json::parse(text));
    EXPECT_TRUE(r) << text << ": " << r.error().message;
    return r ? *r : std::string();
}

// Every input/output pair of the spec appendix "Canonical JSON", "Examples".
TEST(CanonicalJson, SpecAppendixExamples) {
    EXPECT_EQ(canonical("{}"), "{}");
    EXPECT_EQ(canonical(R"({
        "one": 1,
        "two": "Two"
    })"),
              R"({"one":1,"two":"Two"})");
    EXPECT_EQ(canonical(R"({
        "b": "2",
        "a": "1"
    })"),
              R"({"a":"1","b":"2"})");
    EXPECT_EQ(canonical(R"({"b":"2","a":"1"})"), R"({"a":"1","b":"2"})");
    EXPECT_EQ(
        canonical(R"({
        "auth": {
            "success": true,
            "mxid": "@john.doe:example.com",
            "profile": {
                "display_name": "John Doe",
                "three_pids": [
                    {
                        "medium": "email",
                        "address": "john.doe@example.org"
                    },
                    {
                        "medium": "msisdn",
                        "address": "123456789"
                    }
                ]
            }
        }
    })"),
        R"({"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}})");
    EXPECT_EQ(canonical(R"({
        "a": "日本語"
    })"),
              R"({"a":"日本語"})");
    EXPECT_EQ(canonical(R"({
        "本": 2,
        "日": 1
    })"),
              R"({"日":1,"本":2})");
    EXPECT_EQ(canonical(R"({
        "a": "\u65E5"
    })"),
              R"({"a":"日"})");
    EXPECT_EQ(canonical(R"({
        "a": null
    })"),
              R"({"a":null})");
    EXPECT_EQ(canonical(R"({
        "a": -0,
        "b": 1e10
    })"),
              R"({"a":0,"b":10000000000})");
}

TEST(CanonicalJson, EscapesOnlyWhatTheGrammarRequires) {
    // Short escapes for \b \t \n \f \r, \u00xx (lower-case hex) for other controls, none for
    // DEL, '/', or non-ASCII.
    EXPECT_EQ(canonical(R"(["\b\t\n\f\r", "\u0000\u0001\u001f\u000b", "\"\\/", "\u007f", "é😀"])"),
              "[\"\\b\\t\\n\\f\\r\",\"\\u0000\\u0001\\u001f\\u000b\",\"\\\"\\\\/\",\"\x7f\","
              "\"é😀\"]");
}

TEST(CanonicalJson, KeysSortByCodePointNotByUtf16) {
    // U+FF21 sorts before U+1F600 by code point; by UTF-16 units (0xD83D...) it would sort after.
    EXPECT_EQ(canonical(R"({"😀":1,"Ａ":2,"z":3,"Z":4})"), R"({"Z":4,"z":3,"Ａ":2,"😀":1})");
}

TEST(CanonicalJson, NestedArraysKeepTheirOrderAndLiterals) {
    EXPECT_EQ(canonical(R"({"x":[3, 1, {"b":false,"a":true}], "y": [] , "z":{}})"),
              R"({"x":[3,1,{"a":true,"b":false}],"y":[],"z":{}})");
}

TEST(CanonicalJson, IntegerRangeLimits) {
    EXPECT_EQ(canonical("[9007199254740991,-9007199254740991]"),
              "[9007199254740991,-9007199254740991]");
    for (const char* text : {"9007199254740992", "-9007199254740992", "18446744073709551615",
                             "-9223372036854775808", "1e16"}) {
        auto r = encode_canonical_json(json::parse(text));
        ASSERT_FALSE(r) << text;
        EXPECT_EQ(r.error().errcode, "M_BAD_JSON");
        EXPECT_EQ(r.error().status, 400);
    }
}

TEST(CanonicalJson, FloatsAreRefused) {
    for (const char* text : {R"({"a":1.5})", R"({"a":[0.1]})", R"({"a":-1e-3})"}) {
        auto r = encode_canonical_json(json::parse(text));
        ASSERT_FALSE(r) << text;
        EXPECT_EQ(r.error().errcode, "M_BAD_JSON");
        EXPECT_NE(r.error().message.find("float"), std::string::npos) << r.error().message;
    }
    json::value nan = std::nan("");
    EXPECT_FALSE(encode_canonical_json(nan));
    json::value inf = 1.0 / 0.0;
    EXPECT_FALSE(encode_canonical_json(inf));
}

TEST(CanonicalJson, ErrorNamesThePath) {
    auto r = encode_canonical_json(json::parse(R"({"content":{"list":[1, 2.5]}})"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("content.list[1]"), std::string::npos) << r.error().message;
}

TEST(CanonicalJson, InvalidUtf8IsRefused) {
    // Values built in code can hold any bytes; the parser would refuse them.
    for (const std::string& bad : {std::string("\xff"), std::string("\xc0\xaf"),  // overlong '/'
                                   std::string("\xed\xa0\x80"),                   // surrogate
                                   std::string("\xf4\x90\x80\x80"),               // > U+10FFFF
                                   std::string("\xe6\x97"),                       // truncated
                                   std::string("\xe0\x80\xaf")}) {                // overlong
        json::object as_value{{"a", json::string(bad)}};
        EXPECT_FALSE(encode_canonical_json(as_value));
        json::object as_key;
        as_key[bad] = 1;
        EXPECT_FALSE(encode_canonical_json(as_key));
        EXPECT_FALSE(normalise_canonical_json(as_key));
    }
    EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
    EXPECT_TRUE(is_valid_utf8("\xef\xbf\xbf"));      // U+FFFF
}

TEST(CanonicalJson, DepthIsBounded) {
    json::value v = json::array{};
    for (int i = 0; i < kMaxCanonicalDepth + 2; ++i) v = json::array{v};
    EXPECT_FALSE(encode_canonical_json(v));
}

TEST(CanonicalJson, NormaliseTurnsIntegralNumbersIntoInt64) {
    auto r = normalise_canonical_json(json::parse(R"({"a":-0,"b":1e10,"c":[2.0],"d":7})"));
    ASSERT_TRUE(r) << r.error().message;
    const auto& o = r->get_object();
    EXPECT_TRUE(o.at("a").is_int64());
    EXPECT_EQ(o.at("a").get_int64(), 0);
    EXPECT_EQ(o.at("b").get_int64(), 10000000000);
    EXPECT_EQ(o.at("c").get_array()[0].get_int64(), 2);
    EXPECT_EQ(o.at("d").get_int64(), 7);
    EXPECT_FALSE(normalise_canonical_json(json::parse(R"({"a":0.5})")));
}

TEST(CanonicalJson, ParseRefusesNonJsonAndNonCanonicalNumbers) {
    auto not_json = parse_canonical_json("{\"a\":");
    ASSERT_FALSE(not_json);
    EXPECT_EQ(not_json.error().errcode, "M_NOT_JSON");
    auto trailing = parse_canonical_json("{\"a\":1,}");
    ASSERT_FALSE(trailing);
    EXPECT_EQ(trailing.error().errcode, "M_NOT_JSON");
    auto bad_utf8 = parse_canonical_json("\"\xff\"");
    ASSERT_FALSE(bad_utf8);
    auto lone_surrogate = parse_canonical_json(R"("\ud800")");
    EXPECT_FALSE(lone_surrogate);
    auto big = parse_canonical_json("[9007199254740992]");
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().errcode, "M_BAD_JSON");
    auto ok = parse_canonical_json(R"({"a":[1,"x",null]})");
    ASSERT_TRUE(ok);
}

TEST(CanonicalJson, IsCanonicalInteger) {
    EXPECT_TRUE(is_canonical_integer(json::value(std::int64_t{5})));
    EXPECT_TRUE(is_canonical_integer(json::value(std::uint64_t{5})));
    EXPECT_FALSE(is_canonical_integer(json::value(5.0)));
    EXPECT_FALSE(is_canonical_integer(json::value("5")));
    EXPECT_FALSE(is_canonical_integer(json::value(kMaxSafeInteger + 1)));
}

// Spec appendix "Unpadded Base64" examples.
TEST(Base64, SpecExamples) {
    auto enc = [](std::string_view s) {
        return encode_base64(std::span<const std::uint8_t>(
            reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
    };
    EXPECT_EQ(enc(""), "");
    EXPECT_EQ(enc("f"), "Zg");
    EXPECT_EQ(enc("fo"), "Zm8");
    EXPECT_EQ(enc("foo"), "Zm9v");
    EXPECT_EQ(enc("foob"), "Zm9vYg");
    EXPECT_EQ(enc("fooba"), "Zm9vYmE");
    EXPECT_EQ(enc("foobar"), "Zm9vYmFy");
}

TEST(Base64, AlphabetsPaddingAndRefusals) {
    const std::vector<std::uint8_t> bytes{0xfb, 0xff, 0xbf};
    EXPECT_EQ(encode_base64(bytes), "+/+/");
    EXPECT_EQ(encode_base64_url(bytes), "-_-_");
    EXPECT_EQ(decode_base64("+/+/"), bytes);
    EXPECT_EQ(decode_base64_url("-_-_"), bytes);
    EXPECT_FALSE(decode_base64("-_-_"));
    EXPECT_FALSE(decode_base64_url("+/+/"));
    EXPECT_EQ(decode_base64_any("-_-_"), bytes);
    // Padding accepted or not.
    const std::vector<std::uint8_t> f{'f'};
    EXPECT_EQ(decode_base64("Zg"), f);
    EXPECT_EQ(decode_base64("Zg=="), f);
    EXPECT_FALSE(decode_base64("Z"));      // 1 mod 4
    EXPECT_FALSE(decode_base64("Zg=a"));   // junk
    EXPECT_FALSE(decode_base64("Zm 9v"));  // whitespace
    EXPECT_EQ(decode_base64("")->size(), 0U);
}

}  // namespace
}  // namespace myelin::events
