#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {

void add_client_routes(Router& router, Services& services) {
    add_discovery_routes(router, services);
    add_session_routes(router, services);
    add_refresh_routes(router, services);
    add_account_routes(router, services);
    add_account_management_routes(router, services);
    add_device_routes(router, services);
    add_room_routes(router, services);
}

}  // namespace myelin::api::client
