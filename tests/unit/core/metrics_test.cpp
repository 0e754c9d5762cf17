#include "myelin/core/metrics.hpp"

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace myelin::metrics {
namespace {

bool contains(const std::string& text, const std::string& needle) {
    return text.find(needle) != std::string::npos;
}

TEST(Metrics, SameNameAndLabelsGiveTheSameCounter) {
    Counter& a = counter("myelin_test_same_total", "help", {{"k", "v"}});
    Counter& b = counter("myelin_test_same_total", "other help", {{"k", "v"}});
    Counter& c = counter("myelin_test_same_total", "help", {{"k", "w"}});
    EXPECT_EQ(&a, &b);
    EXPECT_NE(&a, &c);
    a.inc();
    b.inc(2);
    EXPECT_EQ(a.value(), 3u);
    EXPECT_EQ(c.value(), 0u);
}

TEST(Metrics, RendersHelpTypeAndLabelledSamples) {
    counter("myelin_test_render_total", "Things rendered.", {{"outcome", "ok"}}).inc(5);
    counter("myelin_test_render_total", "Things rendered.", {{"outcome", "failed"}}).inc();
    gauge("myelin_test_render_depth", "A depth.").set(-3);
    std::string text = render_prometheus();
    EXPECT_TRUE(contains(text, "# HELP myelin_test_render_total Things rendered.\n"));
    EXPECT_TRUE(contains(text, "# TYPE myelin_test_render_total counter\n"));
    EXPECT_TRUE(contains(text, "myelin_test_render_total{outcome=\"ok\"} 5\n"));
    EXPECT_TRUE(contains(text, "myelin_test_render_total{outcome=\"failed\"} 1\n"));
    EXPECT_TRUE(contains(text, "# TYPE myelin_test_render_depth gauge\n"));
    EXPECT_TRUE(contains(text, "myelin_test_render_depth -3\n"));
    // HELP and TYPE appear once per family, not once per series.
    EXPECT_EQ(text.find("# TYPE myelin_test_render_total"),
              text.rfind("# TYPE myelin_test_render_total"));
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
    counter("myelin_test_escape_total", "line one\nback\\slash", {{"route", "a\"b\\c\nd"}}).inc();
    std::string text = render_prometheus();
    EXPECT_TRUE(contains(text, "# HELP myelin_test_escape_total line one\\nback\\\\slash\n"));
    EXPECT_TRUE(contains(text, "myelin_test_escape_total{route=\"a\\\"b\\\\c\\nd\"} 1\n")) << text;
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
    Histogram& h = histogram("myelin_test_latency_seconds", "Latency.", {{"route", "x"}});
    h.observe(0.00005);  // below the first bound (0.0001)
    h.observe(0.0001);   // exactly on a bound: counts in that bucket (le is inclusive)
    h.observe(0.3);      // 0.5 bucket
    h.observe(100.0);    // only +Inf
    EXPECT_EQ(h.count(), 4u);
    EXPECT_NEAR(h.sum(), 100.30015, 1e-5);
    EXPECT_EQ(h.bucket(0), 2u);
    std::string text = render_prometheus();
    EXPECT_TRUE(contains(text, "# TYPE myelin_test_latency_seconds histogram\n"));
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_bucket{route=\"x\",le=\"0.0001\"} 2\n"))
        << text;
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_bucket{route=\"x\",le=\"0.25\"} 2\n"));
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_bucket{route=\"x\",le=\"0.5\"} 3\n"));
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_bucket{route=\"x\",le=\"10\"} 3\n"));
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_bucket{route=\"x\",le=\"+Inf\"} 4\n"));
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_count{route=\"x\"} 4\n"));
    EXPECT_TRUE(contains(text, "myelin_test_latency_seconds_sum{route=\"x\"} 100.30015\n"));
}

TEST(Metrics, HistogramWithoutLabelsRendersOnlyLe) {
    histogram("myelin_test_plain_seconds", "Plain.").observe(1.0);
    std::string text = render_prometheus();
    EXPECT_TRUE(contains(text, "myelin_test_plain_seconds_bucket{le=\"1\"} 1\n")) << text;
    EXPECT_TRUE(contains(text, "myelin_test_plain_seconds_count 1\n"));
}

TEST(Metrics, KindMismatchAndBadNamesAreBugs) {
    counter("myelin_test_kind_total", "c");
    EXPECT_THROW(gauge("myelin_test_kind_total", "g"), std::logic_error);
    EXPECT_THROW(counter("myelin test", "bad name"), std::logic_error);
    EXPECT_THROW(counter("myelin_test_bad_label_total", "h", {{"le", "1"}}), std::logic_error);
    EXPECT_THROW(counter("myelin_test_bad_label_total", "h", {{"a-b", "1"}}), std::logic_error);
}

TEST(Metrics, ConcurrentUpdatesAndRegistrationLoseNothing) {
    Counter& c = counter("myelin_test_concurrent_total", "c");
    Histogram& h = histogram("myelin_test_concurrent_seconds", "h");
    constexpr int kThreads = 4;
    constexpr int kPerThread = 20000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&c, &h, t] {
            for (int i = 0; i < kPerThread; ++i) {
                c.inc();
                h.observe(0.001);
                if (i % 1000 == 0) {
                    // Registration and rendering race with updates without harm.
                    counter("myelin_test_concurrent_total", "c", {{"t", std::to_string(t)}}).inc();
                    (void)render_prometheus();
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(c.value(), static_cast<std::uint64_t>(kThreads * kPerThread));
    EXPECT_EQ(h.count(), static_cast<std::uint64_t>(kThreads * kPerThread));
    EXPECT_EQ(counter("myelin_test_concurrent_total", "c", {{"t", "0"}}).value(), 20u);
}

}  // namespace
}  // namespace myelin::metrics
