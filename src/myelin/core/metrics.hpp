#pragma once

// Process-wide metrics in Prometheus text format. Counters and histograms are registered once
// (by name + label values) and then updated lock-free from any thread. Names start with
// "myelin_". Thread-safety: every function and method is safe to call concurrently.

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace myelin::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count.
class Counter {
public:
    void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down (queue depth, cached tokens).
class Gauge {
public:
    void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
    void add(std::int64_t d) { value_.fetch_add(d, std::memory_order_relaxed); }
    std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> value_{0};
};

// Observations in seconds, bucketed by fixed upper bounds (Prometheus histogram). An observation
// v falls into the first bucket with v <= bound, or into the implicit +Inf bucket.
class Histogram {
public:
    // `upper_bounds` must be sorted ascending (duplicates and NaN are dropped).
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double seconds);
    const std::vector<double>& bounds() const { return bounds_; }
    std::uint64_t bucket(std::size_t i) const;  // cumulative count for bounds()[i]
    std::uint64_t count() const;                // every observation (the +Inf bucket)
    double sum() const;                         // in seconds, microsecond resolution
    // Cumulative counts for every bound plus +Inf last, each bucket read once (consistent).
    std::vector<std::uint64_t> cumulative_snapshot() const;

private:
    std::vector<double> bounds_;
    // Not cumulative; one more than bounds_ (the last is +Inf). count() is their sum, so a
    // rendering is always self-consistent (+Inf == _count) even while others observe.
    std::vector<std::atomic<std::uint64_t>> buckets_;
    std::atomic<std::uint64_t> sum_micros_{0};
};

// The counter named `name` with these labels, created on first use. `help` is used once.
// The reference stays valid for the life of the process; keep it rather than looking it up
// on hot paths.
Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
// Latency histograms use default bounds from 100 µs to 10 s.
Histogram& histogram(std::string_view name, std::string_view help, const Labels& labels = {});

// Registering one name as two kinds (a counter and a gauge), or a name or label name that
// Prometheus rejects, is a bug: these functions throw std::logic_error then.

// The default histogram bounds (seconds), ascending.
const std::vector<double>& default_latency_bounds();

// Everything registered, in Prometheus text exposition format (version 0.0.4).
std::string render_prometheus();

}  // namespace myelin::metrics
