#include "myelin/http/target.hpp"

#include <gtest/gtest.h>

namespace myelin::http {
namespace {

Request with_target(std::string target) {
    Request r;
    r.target = std::move(target);
    return r;
}

TEST(ParseTarget, PlainPathNeedsNoDecoding) {
    auto r = with_target("/_matrix/client/v3/login");
    ASSERT_TRUE(parse_target(r));
    EXPECT_EQ(r.path, "/_matrix/client/v3/login");
    EXPECT_EQ(r.raw_path, r.path);
    EXPECT_TRUE(r.query.empty());
}

TEST(ParseTarget, DecodesPathAndQuery) {
    auto r = with_target("/_matrix/client/v3/devices/A%2FB?x=1+2&y=%26");
    ASSERT_TRUE(parse_target(r));
    EXPECT_EQ(r.path, "/_matrix/client/v3/devices/A/B");
    EXPECT_EQ(r.raw_path, "/_matrix/client/v3/devices/A%2FB");
    EXPECT_EQ(r.query_param("x"), "1 2");
    EXPECT_EQ(r.query_param("y"), "&");
}

TEST(ParseTarget, RefusesNonOriginFormAndDecodedNul) {
    auto star = with_target("*");
    EXPECT_FALSE(parse_target(star));
    auto absolute = with_target("http://example.org/");
    EXPECT_FALSE(parse_target(absolute));
    auto nul = with_target("/a%00b");
    EXPECT_FALSE(parse_target(nul));
    auto bad_escape = with_target("/a%zz");
    EXPECT_FALSE(parse_target(bad_escape));
}

}  // namespace
}  // namespace myelin::http
