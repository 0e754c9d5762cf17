// Receipts and the read marker (receipts.yaml, read_markers.yaml; service/receipt_service.hpp):
//   POST /rooms/{roomId}/receipt/{receiptType}/{eventId}  body {thread_id?}
//     receiptType m.read, m.read.private or m.fully_read (anything else: 400 M_INVALID_PARAM);
//     thread_id "main" or an event ID, not for m.fully_read (else 400 M_INVALID_PARAM).
//   POST /rooms/{roomId}/read_markers  body {m.fully_read?, m.read?, m.read.private?}
//     event IDs (a non-string: 400 M_BAD_JSON).
// An empty body counts as {}.

#include <string>
#include <vector>

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/receipt_service.hpp"

namespace myelin::api::client {
namespace {

using service::ReadMarker;

service::Actor actor_of(const RequestContext& ctx) {
    return service::Actor{std::string(ctx.identity->user_id()),
                          std::string(ctx.identity->device_id())};
}

Result<ReadMarker> decode_receipt(const RequestContext& ctx) {
    ReadMarker marker;
    marker.type = ctx.request.path_params.at(1);
    marker.event_id = ctx.request.path_params.at(2);
    if (marker.type != "m.read" && marker.type != "m.read.private" &&
        marker.type != "m.fully_read") {
        return errors::invalid_param("receiptType must be m.read, m.read.private or m.fully_read");
    }
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) return body.error();
    if (const auto* t = body->if_contains("thread_id"); t != nullptr) {
        if (!t->is_string() || t->get_string().empty()) {
            return errors::invalid_param("thread_id field must be a non-empty string");
        }
        if (marker.type == "m.fully_read") {
            return errors::invalid_param("thread_id is not allowed for m.fully_read");
        }
        std::string thread(t->get_string());
        if (thread != "main" && thread.front() != '$') {
            return errors::invalid_param("thread_id must be 'main' or an event ID");
        }
        marker.thread_id = std::move(thread);
    }
    return marker;
}

boost::asio::awaitable<Result<http::Response>> post_receipt(Services& services,
                                                            RequestContext& ctx) {
    auto marker = decode_receipt(ctx);
    if (!marker) co_return marker.error();
    std::vector<ReadMarker> markers{std::move(*marker)};
    auto op =
        services.receipts.mark(actor_of(ctx), ctx.request.path_params.at(0), std::move(markers));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

Result<std::vector<ReadMarker>> decode_read_markers(std::string_view text) {
    auto body = json::parse_object(text, true);
    if (!body) return body.error();
    std::vector<ReadMarker> markers;
    for (const char* type : {"m.fully_read", "m.read", "m.read.private"}) {
        auto id = json::optional_string(*body, type);
        if (!id) return id.error();
        if (*id) markers.push_back(ReadMarker{type, std::move(**id), ""});
    }
    return markers;
}

boost::asio::awaitable<Result<http::Response>> post_read_markers(Services& services,
                                                                 RequestContext& ctx) {
    auto markers = decode_read_markers(ctx.request.body);
    if (!markers) co_return markers.error();
    auto op =
        services.receipts.mark(actor_of(ctx), ctx.request.path_params.at(0), std::move(*markers));
    auto done = co_await std::move(op);
    if (!done) co_return done.error();
    co_return http::json_response(boost::json::object{});
}

}  // namespace

void add_receipt_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPost, "/rooms/{roomId}/receipt/{receiptType}/{eventId}",
               post_receipt);
    routes.add(http::Method::kPost, "/rooms/{roomId}/read_markers", post_read_markers);
}

}  // namespace myelin::api::client
