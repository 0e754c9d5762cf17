#pragma once

// Connects the HTTP server to the route table: answers OPTIONS preflights, 404/405 with
// M_UNRECOGNIZED, applies the per-IP rate limits (429 before any storage or hashing work),
// resolves the access token before the handler runs (from the cache without waiting when it
// can), calls the handler, renders errors as Matrix JSON, and counts every answer in
// myelin_http_requests_total{route,method,status} and myelin_http_request_duration_seconds.
// Thread-safety: called concurrently by every network thread; its only mutable state is the
// cache of metric handles (lock-free reads, inserts under a mutex).

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "myelin/api/router.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/http/server.hpp"
#include "myelin/service/activity_tracker.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/service/session_service.hpp"

namespace myelin::api {

class ClientDispatcher final : public http::Dispatcher {
public:
    // `limiter` (may be null: no rate limits) must outlive the dispatcher, like the router and
    // the session service.
    ClientDispatcher(const Router& router, service::SessionService& sessions,
                     std::size_t default_body_limit, service::RateLimiter* limiter = nullptr);

    std::optional<std::size_t> body_limit(http::Method method,
                                          std::string_view path) const override;
    std::optional<http::Response> handle_now(http::Request& request) override;

    // Makes every authenticated request record its device's last sighting (client IP and
    // time) in `tracker`, which must outlive the dispatcher. Call before serving. Null: none.
    void set_activity_tracker(service::ActivityTracker* tracker) { activity_ = tracker; }
    boost::asio::awaitable<http::Response> handle(http::Request& request) override;

private:
    // The token the request carries (Authorization: Bearer, or the deprecated access_token
    // query parameter), nullopt when none, or an error when both are given.
    static Result<std::optional<std::string_view>> extract_token(const http::Request& request);
    std::optional<http::Response> answer_without_route(const Router::Match& match,
                                                       const http::Request& request) const;

    // The rate limits for a request to `route` (null: no route) by `identity` (null: not
    // authenticated, or not yet): nullopt to go on, or the 429 answer. Draws client_ip, then
    // the route's class bucket; nothing for exempt users (an authenticated exempt user, or a
    // POST /login naming one).
    // A class draw that admit() leaves to the caller because the store decides it remotely
    // (several instances sharing one budget): the caller awaits RateLimiter::check_async.
    struct DeferredDraw {
        service::LimitClass cls;
        std::string key;
    };
    // With `deferred` null, every draw is made here (the synchronous path only calls it for
    // routes without a remotely decided class: see needs_async_draw).
    std::optional<http::Response> admit(const Route* route, const http::Request& request,
                                        const service::Identity* identity,
                                        std::optional<DeferredDraw>* deferred = nullptr);
    // admit(), awaiting a deferred draw (for handle()).
    boost::asio::awaitable<std::optional<http::Response>> admit_async(
        const Route* route, const http::Request& request, const service::Identity* identity);
    // Whether admitting a request to `route` needs a draw that may wait for the database.
    bool needs_async_draw(const Route& route) const;

    // Records the device's sighting in the activity tracker (an in-memory update, no I/O).
    void note_activity(const http::Request& request, const service::Identity& identity);

    using Steady = std::chrono::steady_clock;
    // Counts `response` in the HTTP metrics and returns it.
    http::Response finish(const Route* route, const http::Request& request, http::Response response,
                          Steady::time_point started);

    // The metric handles of one (route, method, status), created on first use.
    struct MetricSlot {
        const Route* route = nullptr;
        http::Method method = http::Method::kOther;
        int status = 0;
        metrics::Counter* requests = nullptr;
        metrics::Histogram* duration = nullptr;
        MetricSlot* next = nullptr;  // same hash
    };
    MetricSlot& metric_slot(const Route* route, http::Method method, int status);

    const Router& router_;
    service::SessionService& sessions_;
    std::size_t default_body_limit_;
    service::RateLimiter* limiter_;
    service::ActivityTracker* activity_ = nullptr;  // set before serving, then read-only
    static constexpr std::size_t kMetricBuckets = 256;
    // Heads of immutable chains: read without a lock, prepended under metric_mu_.
    std::array<std::atomic<MetricSlot*>, kMetricBuckets> metric_heads_{};
    std::mutex metric_mu_;
    std::vector<std::unique_ptr<MetricSlot>>
        metric_slots_;  // owns the slots; guarded by metric_mu_
};

// Renders a handler's result, adding what the access log should name as the user.
http::Response render(Result<http::Response> result, const service::Identity* identity);

}  // namespace myelin::api
