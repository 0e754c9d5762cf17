// Refresh endpoints, one token engine behind both:
// - POST /_matrix/client/v3/refresh (and /r0, /v1; spec: refresh.yaml, v1.3+): needs no access
//   token (a stale Authorization header is ignored); retry-safe; errors 401 M_UNKNOWN_TOKEN.
// - POST /_matrix/client/r0/tokenrefresh and /_matrix/client/api/v1/tokenrefresh (2015 spec,
//   historical/r0.0.0 login.yaml): the token dies on use; every failure is 403 M_FORBIDDEN.

#include <boost/json.hpp>

#include "myelin/api/client/request_bodies.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/api/client/tokens_json.hpp"

namespace myelin::api::client {
namespace {

boost::asio::awaitable<Result<http::Response>> post_refresh(Services& services, RequestContext& ctx,
                                                            service::RefreshFlavor flavor) {
    auto token = decode_refresh(ctx.request.body);
    if (!token) co_return token.error();
    auto op = services.sessions.refresh(std::move(*token), flavor);
    auto tokens = co_await std::move(op);
    if (!tokens) co_return tokens.error();
    boost::json::object out;
    if (flavor == service::RefreshFlavor::kLegacy) {
        // The 2015 response: exactly access_token and refresh_token.
        out["access_token"] = tokens->access_token;
        if (tokens->refresh_token) out["refresh_token"] = *tokens->refresh_token;
    } else {
        put_tokens(out, *tokens, false);
    }
    co_return http::json_response(out);
}

}  // namespace

void add_refresh_routes(Router& router, Services& services) {
    auto modern = [&services](RequestContext& ctx) {
        return post_refresh(services, ctx, service::RefreshFlavor::kModern);
    };
    auto legacy = [&services](RequestContext& ctx) {
        return post_refresh(services, ctx, service::RefreshFlavor::kLegacy);
    };
    router.add(Route{.method = http::Method::kPost,
                     .mount = Mount::kClient,
                     .path = "/refresh",
                     .rate_class = RateClass::kRefresh,
                     .async = modern});
    // matrix-js-sdk falls back to /v1/refresh on M_UNRECOGNIZED (Synapse < 1.72 served only it).
    router.add(Route{.method = http::Method::kPost,
                     .mount = Mount::kClientV1,
                     .path = "/refresh",
                     .rate_class = RateClass::kRefresh,
                     .async = modern});
    for (const char* path :
         {"/_matrix/client/r0/tokenrefresh", "/_matrix/client/api/v1/tokenrefresh"}) {
        router.add(Route{.method = http::Method::kPost,
                         .mount = Mount::kExact,
                         .path = path,
                         .rate_class = RateClass::kRefresh,
                         .async = legacy});
    }
}

}  // namespace myelin::api::client
