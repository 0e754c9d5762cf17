// Server-side key backup (key_backup.yaml) is not implemented. What clients need to hear:
//   - GET /room_keys/version and GET /room_keys/version/{version}: 404 M_NOT_FOUND "No backup
//     found", the spec's answer when no backup exists; matrix-js-sdk reads exactly that errcode
//     as "this account has no backup" (any other answer is an error it reports);
//   - POST /room_keys/version (create a backup, what Element offers next): 404 M_UNRECOGNIZED,
//     as every endpoint the server does not implement, so the client learns backup is not
//     available rather than that it failed. The other /room_keys endpoints stay unrouted (404
//     M_UNRECOGNIZED too; a path known for another method answers 405 M_UNRECOGNIZED).

#include "myelin/api/client/routes.hpp"

namespace myelin::api::client {
namespace {

Result<http::Response> no_backup(RequestContext&) { return errors::not_found("No backup found"); }

Result<http::Response> not_implemented(RequestContext&) {
    return errors::unrecognized("Key backup is not implemented on this server");
}

}  // namespace

void add_key_backup_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kGet, "/room_keys/version", no_backup);
    routes.add(http::Method::kPost, "/room_keys/version", not_implemented);
    routes.add(http::Method::kGet, "/room_keys/version/{version}", no_backup);
}

}  // namespace myelin::api::client
