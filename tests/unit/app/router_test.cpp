#include "myelin/api/router.hpp"

#include <gtest/gtest.h>

namespace myelin::api {
namespace {

Route route(http::Method method, Mount mount, std::string path) {
    Route r;
    r.method = method;
    r.mount = mount;
    r.path = std::move(path);
    r.sync = [](RequestContext&) -> Result<http::Response> { return http::Response{}; };
    return r;
}

TEST(Router, ClientRoutesAnswerUnderV3AndR0) {
    Router router;
    router.add(route(http::Method::kGet, Mount::kClient, "/account/whoami"));
    EXPECT_TRUE(router.match(http::Method::kGet, "/_matrix/client/v3/account/whoami").route);
    EXPECT_TRUE(router.match(http::Method::kGet, "/_matrix/client/r0/account/whoami").route);
    EXPECT_FALSE(router.match(http::Method::kGet, "/_matrix/client/v1/account/whoami").route);
}

TEST(Router, WrongMethodIsKnownPathWithAllowList) {
    Router router;
    router.add(route(http::Method::kGet, Mount::kClient, "/login"));
    router.add(route(http::Method::kPost, Mount::kClient, "/login"));
    auto m = router.match(http::Method::kDelete, "/_matrix/client/v3/login");
    EXPECT_FALSE(m.route);
    EXPECT_TRUE(m.path_known);
    EXPECT_EQ(m.allow, "GET, POST, OPTIONS");
    auto unknown = router.match(http::Method::kGet, "/_matrix/client/v3/nope");
    EXPECT_FALSE(unknown.path_known);
}

TEST(Router, PlaceholdersCaptureOneSegment) {
    Router router;
    router.add(route(http::Method::kGet, Mount::kClient, "/devices/{deviceId}"));
    auto m = router.match(http::Method::kGet, "/_matrix/client/v3/devices/ABC");
    ASSERT_TRUE(m.route);
    ASSERT_EQ(m.params.size(), 1u);
    EXPECT_EQ(m.params[0], "ABC");
    EXPECT_FALSE(router.match(http::Method::kGet, "/_matrix/client/v3/devices/").route);
    EXPECT_FALSE(router.match(http::Method::kGet, "/_matrix/client/v3/devices/A/B").route);
}

TEST(Router, ExactAndV1Mounts) {
    Router router;
    router.add(route(http::Method::kGet, Mount::kExact, "/_matrix/client/versions"));
    router.add(route(http::Method::kPost, Mount::kClientV1, "/refresh"));
    EXPECT_TRUE(router.match(http::Method::kGet, "/_matrix/client/versions").route);
    EXPECT_TRUE(router.match(http::Method::kPost, "/_matrix/client/v1/refresh").route);
    EXPECT_FALSE(router.match(http::Method::kPost, "/_matrix/client/v3/refresh").route);
}

}  // namespace
}  // namespace myelin::api
