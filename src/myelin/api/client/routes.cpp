#include "myelin/api/client/routes.hpp"

#include <utility>

namespace myelin::api::client {

AsyncHandler bind_services(Services& services, ServiceHandler handler) {
    return [&services, handler](RequestContext& ctx) { return handler(services, ctx); };
}

void AuthenticatedRoutes::add(http::Method method, std::string path, ServiceHandler handler,
                              std::size_t body_limit) {
    add(method, std::move(path), bind_services(services_, handler), body_limit);
}

void AuthenticatedRoutes::add(http::Method method, std::string path, AsyncHandler handler,
                              std::size_t body_limit) {
    router_.add(Route{.method = method,
                      .path = std::move(path),
                      .auth = AuthPolicy::kRequired,
                      .rate_class = RateClass::kAuthenticated,
                      .body_limit = body_limit,
                      .async = std::move(handler)});
}

void AuthenticatedRoutes::add(http::Method method, std::string path, SyncHandler handler) {
    router_.add(Route{.method = method,
                      .path = std::move(path),
                      .auth = AuthPolicy::kRequired,
                      .rate_class = RateClass::kAuthenticated,
                      .sync = std::move(handler)});
}

void add_client_routes(Router& router, Services& services) {
    add_discovery_routes(router, services);
    add_session_routes(router, services);
    add_refresh_routes(router, services);
    add_account_routes(router, services);
    add_account_management_routes(router, services);
    add_device_routes(router, services);
    // What clients call right after login (issue #8 §1).
    add_push_rule_routes(router, services);
    add_filter_routes(router, services);
    add_profile_routes(router, services);
    add_account_data_routes(router, services);
    add_empty_answer_routes(router, services);
    add_room_tag_routes(router, services);
    add_threepid_routes(router, services);
    add_presence_routes(router, services);
    add_pusher_routes(router, services);
    add_key_backup_routes(router, services);
    add_e2e_key_routes(router, services);
    add_cross_signing_routes(router, services);
    add_to_device_routes(router, services);
    add_room_routes(router, services);
    add_sync_routes(router, services);
    add_typing_routes(router, services);
    add_receipt_routes(router, services);
}

}  // namespace myelin::api::client
