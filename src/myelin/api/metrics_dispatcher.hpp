#pragma once

// The metrics listener's dispatcher: answers GET /metrics with every registered metric in
// Prometheus text format (version 0.0.4), 405 for other methods on /metrics and 404 for every
// other path. It runs on its own http::Server, apart from the client API, so that the metrics
// port can stay on a private interface.
// Thread-safety: handle_now() may be called concurrently; the refresh callback must be
// thread-safe itself.

#include <functional>
#include <optional>

#include "myelin/http/server.hpp"

namespace myelin::api {

class MetricsDispatcher final : public http::Dispatcher {
public:
    // `refresh` (may be empty) runs before each rendering, to set gauges that are sampled at
    // scrape time (e.g. the token cache's size). It must not block on I/O.
    explicit MetricsDispatcher(std::function<void()> refresh = {});

    std::optional<std::size_t> body_limit(http::Method method,
                                          std::string_view path) const override;
    std::optional<http::Response> handle_now(http::Request& request) override;
    boost::asio::awaitable<http::Response> handle(http::Request& request) override;

private:
    http::Response answer(const http::Request& request) const;

    std::function<void()> refresh_;
};

}  // namespace myelin::api
