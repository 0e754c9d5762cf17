#include "myelin/api/metrics_dispatcher.hpp"

#include <utility>

#include "myelin/core/metrics.hpp"

namespace myelin::api {
namespace {

constexpr std::size_t kNoBody = 0;  // scrapes carry no body

http::Response plain(int status, std::string body) {
    http::Response r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(body);
    return r;
}

}  // namespace

MetricsDispatcher::MetricsDispatcher(std::function<void()> refresh)
    : refresh_(std::move(refresh)) {}

std::optional<std::size_t> MetricsDispatcher::body_limit(http::Method /*method*/,
                                                         std::string_view /*path*/) const {
    return kNoBody;
}

std::optional<http::Response> MetricsDispatcher::handle_now(http::Request& request) {
    return answer(request);
}

boost::asio::awaitable<http::Response> MetricsDispatcher::handle(http::Request& request) {
    co_return answer(request);
}

http::Response MetricsDispatcher::answer(const http::Request& request) const {
    if (request.path != "/metrics") return plain(404, "404 page not found\n");
    if (request.method != http::Method::kGet && request.method != http::Method::kHead) {
        http::Response r = plain(405, "405 method not allowed\n");
        r.headers.emplace_back("Allow", "GET, HEAD");
        return r;
    }
    if (refresh_) refresh_();
    http::Response r;
    r.status = 200;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics::render_prometheus();
    return r;
}

}  // namespace myelin::api
