#include "myelin/api/dispatcher.hpp"

#include <strings.h>

#include <functional>

namespace myelin::api {
namespace {

// The route label of the HTTP metrics: the template as mounted, with the client API version as
// a placeholder of its own (one route answers under v3 and r0).
std::string route_label(const Route* route) {
    if (!route) return "unmatched";
    switch (route->mount) {
        case Mount::kClient:
            return "/_matrix/client/{version}" + route->path;
        case Mount::kClientV1:
            return "/_matrix/client/v1" + route->path;
        case Mount::kExact:
            return route->path;
    }
    return route->path;
}

}  // namespace

ClientDispatcher::ClientDispatcher(const Router& router, service::SessionService& sessions,
                                   std::size_t default_body_limit, service::RateLimiter* limiter)
    : router_(router),
      sessions_(sessions),
      default_body_limit_(default_body_limit),
      limiter_(limiter) {}

std::optional<std::size_t> ClientDispatcher::body_limit(http::Method method,
                                                        std::string_view path) const {
    auto m = router_.match(method, path);
    if (m.route && m.route->body_limit > 0) return m.route->body_limit;
    return default_body_limit_;
}

http::Response render(Result<http::Response> result, const service::Identity* identity) {
    http::Response response = result ? std::move(*result) : http::error_response(result.error());
    if (identity) response.log_user = identity->user_id();
    return response;
}

Result<std::optional<std::string_view>> ClientDispatcher::extract_token(
    const http::Request& request) {
    std::optional<std::string_view> from_header;
    if (!request.authorization.empty()) {
        std::string_view h = request.authorization;
        if (h.size() > 7 && strncasecmp(h.data(), "Bearer ", 7) == 0) {
            from_header = h.substr(7);
        } else {
            return errors::missing_token();
        }
    }
    auto from_query = request.query_param("access_token");
    if (from_header && from_query) {
        return errors::make(401, "M_MISSING_TOKEN",
                            "Send the access token either in the Authorization header or in the "
                            "query string, not both");
    }
    if (from_header) return from_header;
    return from_query;
}

std::optional<http::Response> ClientDispatcher::answer_without_route(
    const Router::Match& match, const http::Request& request) const {
    if (request.method == http::Method::kOptions) {
        // CORS preflight: never runs the endpoint and never needs a token.
        http::Response r;
        r.status = 204;
        r.content_type = {};
        return r;
    }
    if (match.route) return std::nullopt;
    if (!match.path_known) return http::error_response(errors::unrecognized());
    http::Response r = http::error_response(errors::method_not_allowed());
    r.headers.emplace_back("Allow", match.allow);
    return r;
}

bool ClientDispatcher::needs_async_draw(const Route& route) const {
    if (!limiter_ || !limiter_->enabled()) return false;
    std::optional<service::LimitClass> cls;
    if (route.rate_class == RateClass::kLogin) cls = service::LimitClass::kLogin;
    if (route.rate_class == RateClass::kRegister) cls = service::LimitClass::kRegistration;
    if (route.rate_class == RateClass::kTokenValidity) cls = service::LimitClass::kTokenValidity;
    return cls && limiter_->decides_remotely(*cls);
}

boost::asio::awaitable<std::optional<http::Response>> ClientDispatcher::admit_async(
    const Route* route, const http::Request& request, const service::Identity* identity) {
    std::optional<DeferredDraw> deferred;
    auto response = admit(route, request, identity, &deferred);
    if (response || !deferred) co_return response;
    auto check_op = limiter_->check_async(deferred->cls, std::move(deferred->key));
    auto checked = co_await std::move(check_op);
    if (!checked) co_return http::error_response(checked.error());
    co_return std::nullopt;
}

std::optional<http::Response> ClientDispatcher::admit(const Route* route,
                                                      const http::Request& request,
                                                      const service::Identity* identity,
                                                      std::optional<DeferredDraw>* deferred) {
    if (!limiter_ || !limiter_->enabled()) return std::nullopt;
    if (identity && limiter_->is_exempt(identity->user_id())) return std::nullopt;
    const bool is_post = request.method == http::Method::kPost;
    const RateClass rate_class = route ? route->rate_class : RateClass::kNone;
    if (rate_class == RateClass::kLogin && is_post && limiter_->has_exemptions() &&
        limiter_->is_exempt_login(service::login_body_user(request.body))) {
        // Bots that sign in on every run: the exemption has to cover login to mean anything.
        return std::nullopt;
    }
    const std::string key = service::ip_bucket_key(limiter_->client_ip(request));
    if (auto r = limiter_->check(service::LimitClass::kClientIp, key); !r) {
        return http::error_response(r.error());
    }
    // GET /login (the flow list) and GET /register/available (asked while a user types) only
    // count against the per-IP budget; the class buckets guard the endpoints that cost.
    std::optional<service::LimitClass> cls;
    if (rate_class == RateClass::kLogin && is_post) cls = service::LimitClass::kLogin;
    if (rate_class == RateClass::kRegister && is_post) cls = service::LimitClass::kRegistration;
    if (rate_class == RateClass::kTokenValidity) cls = service::LimitClass::kTokenValidity;
    // RateClass::kRefresh is per device: SessionService::refresh draws once the token is known.
    if (cls && deferred && limiter_->decides_remotely(*cls)) {
        *deferred = DeferredDraw{*cls, key};
        return std::nullopt;
    }
    if (cls) {
        if (auto r = limiter_->check(*cls, key); !r) return http::error_response(r.error());
    }
    return std::nullopt;
}

void ClientDispatcher::note_activity(const http::Request& request,
                                     const service::Identity& identity) {
    if (!activity_) return;
    // Keyed by device, never by token; the address as the rate limiter sees it (trusted
    // proxies' X-Forwarded-For honoured).
    if (limiter_) {
        activity_->touch_session(*identity.session, limiter_->client_ip(request));
    } else {
        activity_->touch_session(*identity.session, request.remote_ip);
    }
}

ClientDispatcher::MetricSlot& ClientDispatcher::metric_slot(const Route* route, http::Method method,
                                                            int status) {
    const std::size_t h = std::hash<const void*>{}(route) ^
                          (static_cast<std::size_t>(method) * 0x9E3779B1U) ^
                          (static_cast<std::size_t>(status) * 0x85EBCA6BU);
    auto& head = metric_heads_[(h ^ (h >> 17)) % kMetricBuckets];
    for (MetricSlot* s = head.load(std::memory_order_acquire); s; s = s->next) {
        if (s->route == route && s->method == method && s->status == status) return *s;
    }
    std::lock_guard lock(metric_mu_);
    for (MetricSlot* s = head.load(std::memory_order_acquire); s; s = s->next) {
        if (s->route == route && s->method == method && s->status == status) return *s;
    }
    auto slot = std::make_unique<MetricSlot>();
    slot->route = route;
    slot->method = method;
    slot->status = status;
    const std::string label = route_label(route);
    slot->requests =
        &metrics::counter("myelin_http_requests_total", "HTTP requests answered by the client API",
                          {{"route", label},
                           {"method", std::string(http::method_name(method))},
                           {"status", std::to_string(status)}});
    slot->duration = &metrics::histogram("myelin_http_request_duration_seconds",
                                         "Time from a complete request to its response, by route",
                                         {{"route", label}});
    slot->next = head.load(std::memory_order_relaxed);
    MetricSlot* published = slot.get();
    metric_slots_.push_back(std::move(slot));
    head.store(published, std::memory_order_release);
    return *published;
}

http::Response ClientDispatcher::finish(const Route* route, const http::Request& request,
                                        http::Response response, Steady::time_point started) {
    MetricSlot& slot = metric_slot(route, request.method, response.status);
    slot.requests->inc();
    slot.duration->observe(std::chrono::duration<double>(Steady::now() - started).count());
    return response;
}

std::optional<http::Response> ClientDispatcher::handle_now(http::Request& request) {
    const auto started = Steady::now();
    auto match = router_.match(request.method, request.path);
    if (!match.route || request.method == http::Method::kOptions) {
        // Preflights do no work and are not limited (a browser sends one before many requests);
        // 404/405 answers draw from the client's budget like any request.
        std::optional<http::Response> response;
        if (request.method != http::Method::kOptions) response = admit(nullptr, request, nullptr);
        if (!response) response = answer_without_route(match, request);
        return finish(match.route, request, std::move(*response), started);
    }
    const Route& route = *match.route;
    if (!route.sync || needs_async_draw(route)) return std::nullopt;
    request.path_params = std::move(match.params);
    RequestContext ctx{request, nullptr};
    if (route.auth == AuthPolicy::kNone) {
        if (auto refused = admit(&route, request, nullptr)) {
            return finish(&route, request, std::move(*refused), started);
        }
        return finish(&route, request, render(route.sync(ctx), nullptr), started);
    }

    auto token = extract_token(request);
    if (!token || !*token) {
        auto response = admit(&route, request, nullptr);
        if (!response) {
            response = http::error_response(token ? errors::missing_token() : token.error());
        }
        return finish(&route, request, std::move(*response), started);
    }
    auto verdict = sessions_.authenticate_now(**token, route.auth == AuthPolicy::kAllowExpired);
    // Needs storage: handle() takes over, and draws the rate limits itself.
    if (std::holds_alternative<service::AuthNeedsStorage>(verdict)) return std::nullopt;
    auto* identity = std::get_if<service::Identity>(&verdict);
    if (auto refused = admit(&route, request, identity)) {
        return finish(&route, request, std::move(*refused), started);
    }
    if (auto* err = std::get_if<Error>(&verdict)) {
        return finish(&route, request, http::error_response(*err), started);
    }
    ctx.identity = identity;
    note_activity(request, *identity);
    return finish(&route, request, render(route.sync(ctx), identity), started);
}

boost::asio::awaitable<http::Response> ClientDispatcher::handle(http::Request& request) {
    const auto started = Steady::now();
    auto match = router_.match(request.method, request.path);
    if (!match.route || request.method == http::Method::kOptions) {
        std::optional<http::Response> response;
        if (request.method != http::Method::kOptions) response = admit(nullptr, request, nullptr);
        if (!response) response = answer_without_route(match, request);
        co_return finish(match.route, request, std::move(*response), started);
    }
    const Route& route = *match.route;
    request.path_params = std::move(match.params);
    RequestContext ctx{request, nullptr};
    std::optional<service::Identity> identity;
    if (route.auth != AuthPolicy::kNone) {
        auto token = extract_token(request);
        if (!token || !*token) {
            auto response = admit(&route, request, nullptr);
            if (!response) {
                // if/else, not ?:, inside a coroutine (g++ 12 destroys ?: temporaries twice).
                if (token) {
                    response = http::error_response(errors::missing_token());
                } else {
                    response = http::error_response(token.error());
                }
            }
            co_return finish(&route, request, std::move(*response), started);
        }
        const bool allow_expired = route.auth == AuthPolicy::kAllowExpired;
        auto verdict = sessions_.authenticate_now(**token, allow_expired);
        if (auto* known = std::get_if<service::Identity>(&verdict)) {
            identity = *known;
            if (auto refused = admit(&route, request, &*identity)) {
                co_return finish(&route, request, std::move(*refused), started);
            }
        } else if (auto* err = std::get_if<Error>(&verdict)) {
            auto response = admit(&route, request, nullptr);
            if (!response) response = http::error_response(*err);
            co_return finish(&route, request, std::move(*response), started);
        } else {
            // The answer needs storage: draw before touching it, so a flood of well-formed
            // unknown tokens is limited like anything else; an exempt user gets the token back.
            if (auto refused = admit(&route, request, nullptr)) {
                co_return finish(&route, request, std::move(*refused), started);
            }
            auto resolve_op = sessions_.authenticate(std::string(**token), allow_expired);
            auto resolved = co_await std::move(resolve_op);
            if (!resolved) {
                co_return finish(&route, request, http::error_response(resolved.error()), started);
            }
            identity = std::move(*resolved);
            if (limiter_ && limiter_->is_exempt(identity->user_id())) {
                limiter_->give_back(service::LimitClass::kClientIp,
                                    service::ip_bucket_key(limiter_->client_ip(request)));
            }
        }
        ctx.identity = &*identity;
        note_activity(request, *identity);
    } else {
        auto admit_op = admit_async(&route, request, nullptr);
        auto refused = co_await std::move(admit_op);
        if (refused) co_return finish(&route, request, std::move(*refused), started);
    }
    if (route.sync)
        co_return finish(&route, request, render(route.sync(ctx), ctx.identity), started);
    auto handler_op = route.async(ctx);
    auto result = co_await std::move(handler_op);
    co_return finish(&route, request, render(std::move(result), ctx.identity), started);
}

}  // namespace myelin::api
