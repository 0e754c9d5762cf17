// The metrics listener's dispatcher: /metrics in Prometheus text format with the scrape-time
// refresh run first, 405 for other methods there, 404 everywhere else.

#include "myelin/api/metrics_dispatcher.hpp"

#include <gtest/gtest.h>

#include "myelin/core/metrics.hpp"

namespace myelin::api {
namespace {

http::Request request(http::Method method, std::string path) {
    http::Request r;
    r.method = method;
    r.path = std::move(path);
    return r;
}

TEST(MetricsDispatcher, ServesMetricsAfterRefreshing) {
    int refreshed = 0;
    MetricsDispatcher d([&refreshed] {
        ++refreshed;
        metrics::gauge("myelin_test_scrape_gauge", "Set at scrape time.").set(refreshed * 10);
    });
    auto req = request(http::Method::kGet, "/metrics");
    auto r = d.handle_now(req);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->content_type, "text/plain; version=0.0.4");
    EXPECT_EQ(refreshed, 1);
    EXPECT_NE(r->body.find("myelin_test_scrape_gauge 10\n"), std::string::npos) << r->body;
    r = d.handle_now(req);
    EXPECT_NE(r->body.find("myelin_test_scrape_gauge 20\n"), std::string::npos);
}

TEST(MetricsDispatcher, OnlyGetOnMetrics) {
    MetricsDispatcher d;
    auto post = request(http::Method::kPost, "/metrics");
    auto r = d.handle_now(post);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    for (const char* path : {"/", "/metrics/", "/_matrix/client/versions", "/health"}) {
        auto other = request(http::Method::kGet, path);
        auto answer = d.handle_now(other);
        ASSERT_TRUE(answer);
        EXPECT_EQ(answer->status, 404) << path;
        EXPECT_EQ(answer->body.find("myelin_"), std::string::npos);
    }
    EXPECT_EQ(d.body_limit(http::Method::kPost, "/metrics"), 0u);
}

}  // namespace
}  // namespace myelin::api
