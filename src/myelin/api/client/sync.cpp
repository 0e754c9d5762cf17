// GET /sync (sync.yaml; service/sync_service.hpp): query parameters `since` (a next_batch of
// this server; anything else 400 M_INVALID_PARAM), `timeout` (milliseconds, 0..300000; not a
// non-negative integer: 400 M_INVALID_PARAM), `full_state` ("true"/"false"), `filter` (a
// stored filter's ID, or a Filter as JSON when it starts with "{"; an unknown ID or bad JSON:
// 400 M_INVALID_PARAM, as Synapse answers), `set_presence` (accepted and ignored: no presence
// yet).

#include <algorithm>
#include <charconv>
#include <chrono>

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/sync_service.hpp"

namespace myelin::api::client {
namespace {

constexpr std::int64_t kMaxTimeoutMs = 300'000;

Result<std::int64_t> non_negative(std::string_view text, std::string_view what) {
    std::int64_t value = -1;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
        return errors::invalid_param(std::string(what) + " must be a non-negative integer");
    }
    return value;
}

Result<service::SyncRequest> decode_sync(const RequestContext& ctx) {
    service::SyncRequest r;
    if (auto since = ctx.request.query_param("since")) {
        r.since = service::parse_sync_token(*since);
        if (!r.since) return errors::invalid_param("Unknown 'since' token");
    }
    if (auto timeout = ctx.request.query_param("timeout")) {
        auto ms = non_negative(*timeout, "timeout");
        if (!ms) return ms.error();
        r.timeout = std::chrono::milliseconds(std::min(*ms, kMaxTimeoutMs));
    }
    if (auto full_state = ctx.request.query_param("full_state")) {
        if (*full_state != "true" && *full_state != "false") {
            return errors::invalid_param("full_state must be 'true' or 'false'");
        }
        r.full_state = *full_state == "true";
    }
    if (auto filter = ctx.request.query_param("filter")) {
        if (!filter->empty() && filter->front() == '{') {
            auto parsed = json::parse_object(*filter);
            if (!parsed) return errors::invalid_param("filter is not a JSON object");
            r.filter = service::parse_sync_filter(*parsed);
        } else {
            auto id = non_negative(*filter, "filter");
            if (!id) return errors::invalid_param("No such filter");
            r.filter_id = *id;
        }
    }
    return r;
}

boost::asio::awaitable<Result<boost::json::object>> sync_failed(Error error) { co_return error; }

// The sync of the decoded request, or the decoding's error. Not a coroutine: the decoded request
// and the actor go straight into SyncService::sync()'s frame rather than also staying in
// get_sync()'s through a long-poll's wait.
boost::asio::awaitable<Result<boost::json::object>> start_sync(Services& services,
                                                               const RequestContext& ctx) {
    auto request = decode_sync(ctx);
    if (!request) return sync_failed(request.error());
    service::Actor actor{std::string(ctx.identity->user_id()),
                         std::string(ctx.identity->device_id())};
    return services.sync.sync(std::move(actor), std::move(*request));
}

boost::asio::awaitable<Result<http::Response>> get_sync(Services& services, RequestContext& ctx) {
    auto op = start_sync(services, ctx);
    auto out = co_await std::move(op);
    if (!out) co_return out.error();
    co_return http::json_response(*out);
}

}  // namespace

void add_sync_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/sync", get_sync);
}

}  // namespace myelin::api::client
