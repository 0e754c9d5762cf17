#include "myelin/core/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <variant>

#include <fmt/format.h>

namespace myelin::metrics {
namespace {

enum class Kind { kCounter, kGauge, kHistogram };

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::kCounter:
            return "counter";
        case Kind::kGauge:
            return "gauge";
        case Kind::kHistogram:
            return "histogram";
    }
    return "untyped";
}

// One time series: its label set and the metric object (never moved once created, so the
// references handed out stay valid).
struct Series {
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
};

struct Family {
    Kind kind = Kind::kCounter;
    std::string help;
    std::vector<std::unique_ptr<Series>> series;  // registration order
};

// The registry. The mutex guards the maps only (registration and rendering); metric updates
// touch nothing but the metric's own atomics.
struct Registry {
    std::mutex mutex;
    std::map<std::string, Family, std::less<>> families;  // sorted: stable output
};

Registry& registry() {
    static Registry* r = new Registry();  // never destroyed: references outlive static dtors
    return *r;
}

bool valid_name(std::string_view name, bool allow_colon) {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            return false;
        }
    }
    return true;
}

Series& find_or_add(std::string_view name, std::string_view help, const Labels& labels, Kind kind) {
    if (!valid_name(name, true)) {
        throw std::logic_error(fmt::format("invalid metric name '{}'", name));
    }
    for (const auto& [k, v] : labels) {
        (void)v;
        if (!valid_name(k, false) || k.starts_with("__") || k == "le") {
            throw std::logic_error(fmt::format("invalid label name '{}' on '{}'", k, name));
        }
    }
    Registry& reg = registry();
    std::lock_guard lock(reg.mutex);
    auto it = reg.families.find(name);
    if (it == reg.families.end()) {
        Family f;
        f.kind = kind;
        f.help = std::string(help);
        it = reg.families.emplace(std::string(name), std::move(f)).first;
    } else if (it->second.kind != kind) {
        throw std::logic_error(fmt::format("metric '{}' registered as {} and {}", name,
                                           kind_name(it->second.kind), kind_name(kind)));
    }
    Family& family = it->second;
    for (auto& s : family.series) {
        if (s->labels == labels) {
            return *s;
        }
    }
    auto s = std::make_unique<Series>();
    s->labels = labels;
    switch (kind) {
        case Kind::kCounter:
            s->counter = std::make_unique<Counter>();
            break;
        case Kind::kGauge:
            s->gauge = std::make_unique<Gauge>();
            break;
        case Kind::kHistogram:
            s->histogram = std::make_unique<Histogram>(default_latency_bounds());
            break;
    }
    family.series.push_back(std::move(s));
    return *family.series.back();
}

void append_escaped_help(std::string& out, std::string_view text) {
    for (char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
}

void append_escaped_label_value(std::string& out, std::string_view text) {
    for (char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '"') {
            out += "\\\"";
        } else {
            out += c;
        }
    }
}

// `{a="x",b="y"}` (with an optional extra le="..." pair), or nothing for no labels.
void append_labels(std::string& out, const Labels& labels, std::string_view le = {}) {
    if (labels.empty() && le.empty()) {
        return;
    }
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) {
            out += ',';
        }
        first = false;
        out += k;
        out += "=\"";
        append_escaped_label_value(out, v);
        out += '"';
    }
    if (!le.empty()) {
        if (!first) {
            out += ',';
        }
        out += "le=\"";
        out += le;
        out += '"';
    }
    out += '}';
}

std::string format_double(double v) {
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    if (std::isnan(v)) {
        return "NaN";
    }
    return fmt::format("{}", v);
}

}  // namespace

const std::vector<double>& default_latency_bounds() {
    static const std::vector<double> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                            0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                            1.0,    2.5,     5.0,    10.0};
    return bounds;
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    std::erase_if(bounds_, [](double b) { return std::isnan(b) || std::isinf(b); });
    std::sort(bounds_.begin(), bounds_.end());
    bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
    buckets_ = std::vector<std::atomic<std::uint64_t>>(bounds_.size() + 1);
}

void Histogram::observe(double seconds) {
    if (std::isnan(seconds)) {
        return;
    }
    auto it = std::lower_bound(bounds_.begin(), bounds_.end(), seconds);  // first bound >= v
    auto index = static_cast<std::size_t>(it - bounds_.begin());
    buckets_[index].fetch_add(1, std::memory_order_relaxed);
    if (seconds > 0) {
        double micros = std::min(seconds * 1e6, 1e15);
        sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(micros)),
                              std::memory_order_relaxed);
    }
}

std::uint64_t Histogram::bucket(std::size_t i) const {
    std::uint64_t total = 0;
    for (std::size_t j = 0; j <= i && j < buckets_.size(); ++j) {
        total += buckets_[j].load(std::memory_order_relaxed);
    }
    return total;
}

std::uint64_t Histogram::count() const { return bucket(buckets_.size() - 1); }

std::vector<std::uint64_t> Histogram::cumulative_snapshot() const {
    std::vector<std::uint64_t> out(buckets_.size());
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
        total += buckets_[i].load(std::memory_order_relaxed);
        out[i] = total;
    }
    return out;
}

double Histogram::sum() const {
    return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
}

Counter& counter(std::string_view name, std::string_view help, const Labels& labels) {
    return *find_or_add(name, help, labels, Kind::kCounter).counter;
}

Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels) {
    return *find_or_add(name, help, labels, Kind::kGauge).gauge;
}

Histogram& histogram(std::string_view name, std::string_view help, const Labels& labels) {
    return *find_or_add(name, help, labels, Kind::kHistogram).histogram;
}

std::string render_prometheus() {
    Registry& reg = registry();
    std::string out;
    out.reserve(16 * 1024);
    std::lock_guard lock(reg.mutex);
    for (const auto& [name, family] : reg.families) {
        out += "# HELP ";
        out += name;
        out += ' ';
        append_escaped_help(out, family.help);
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += kind_name(family.kind);
        out += '\n';
        for (const auto& s : family.series) {
            switch (family.kind) {
                case Kind::kCounter:
                    out += name;
                    append_labels(out, s->labels);
                    out += fmt::format(" {}\n", s->counter->value());
                    break;
                case Kind::kGauge:
                    out += name;
                    append_labels(out, s->labels);
                    out += fmt::format(" {}\n", s->gauge->value());
                    break;
                case Kind::kHistogram: {
                    const Histogram& h = *s->histogram;
                    const std::vector<std::uint64_t> cumulative = h.cumulative_snapshot();
                    const auto& bounds = h.bounds();
                    for (std::size_t i = 0; i < bounds.size(); ++i) {
                        out += name;
                        out += "_bucket";
                        append_labels(out, s->labels, format_double(bounds[i]));
                        out += fmt::format(" {}\n", cumulative[i]);
                    }
                    const std::uint64_t total = cumulative.back();
                    out += name;
                    out += "_bucket";
                    append_labels(out, s->labels, "+Inf");
                    out += fmt::format(" {}\n", total);
                    out += name;
                    out += "_sum";
                    append_labels(out, s->labels);
                    out += ' ';
                    out += format_double(h.sum());
                    out += '\n';
                    out += name;
                    out += "_count";
                    append_labels(out, s->labels);
                    out += fmt::format(" {}\n", total);
                    break;
                }
            }
        }
    }
    return out;
}

}  // namespace myelin::metrics
