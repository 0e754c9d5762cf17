#pragma once

// Registration of every client-server route, one function per endpoint group (each defined in
// the file of that group). add_client_routes() is the single place the table is assembled.

#include <cstddef>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "myelin/api/router.hpp"
#include "myelin/api/services.hpp"

namespace myelin::api::client {

// A handler given the server's services and the request (the form of most endpoint functions).
using ServiceHandler = boost::asio::awaitable<Result<http::Response>> (*)(Services&,
                                                                          RequestContext&);

// `handler` as a route's AsyncHandler, called with `services` (which must outlive the route).
AsyncHandler bind_services(Services& services, ServiceHandler handler);

// Adds the common kind of client route to `router`: mounted under /_matrix/client/v3 and /r0,
// needing a valid access token (401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN before the handler runs)
// and drawing from the authenticated rate-limit bucket. Used by the add_*_routes functions below;
// call only before serving. Routes with another policy are added with Router::add directly.
class AuthenticatedRoutes {
public:
    // A handler given the server's services and the request.
    using ServiceHandler = boost::asio::awaitable<Result<http::Response>> (*)(Services&,
                                                                              RequestContext&);

    // `router` and `services` must outlive the router's use (the handlers keep `services`).
    AuthenticatedRoutes(Router& router, Services& services)
        : router_(router), services_(services) {}

    // method + path -> handler(services, request). body_limit in bytes; 0: the server default.
    void add(http::Method method, std::string path, ServiceHandler handler,
             std::size_t body_limit = 0);
    // method + path -> handler(request), a handler bound by the caller.
    void add(http::Method method, std::string path, AsyncHandler handler,
             std::size_t body_limit = 0);
    // method + path -> handler(request), answered on the network thread (no I/O, no hashing).
    void add(http::Method method, std::string path, SyncHandler handler);

private:
    Router& router_;
    Services& services_;
};

// GET /_matrix/client/versions, GET /.well-known/matrix/client, GET /health.
void add_discovery_routes(Router& router, Services& services);
// GET/POST /login, POST /register, GET /register/available.
void add_session_routes(Router& router, Services& services);
// POST /refresh (v3, r0, v1) and the original POST /r0/tokenrefresh, /api/v1/tokenrefresh.
void add_refresh_routes(Router& router, Services& services);
// GET /account/whoami, POST /logout, POST /logout/all.
void add_account_routes(Router& router, Services& services);
// POST /account/password, POST /account/deactivate (both UIA), GET /capabilities,
// GET /v1/register/m.login.registration_token/validity.
void add_account_management_routes(Router& router, Services& services);
// GET /devices, GET/PUT/DELETE /devices/{deviceId}, POST /delete_devices (deletion: UIA).
void add_device_routes(Router& router, Services& services);
// Rooms (rooms.cpp): createRoom, send, state, membership, redaction, messages, event, context,
// members, joined_members, joined_rooms, local aliases, publicRooms, and GET
// /_matrix/key/v2/server.
void add_room_routes(Router& router, Services& services);

// ---- What clients call right after login (issue #8 §1) ----
// GET /pushrules/, /pushrules/global/, GET/PUT/DELETE /pushrules/global/{kind}/{ruleId},
// GET/PUT …/enabled and …/actions.
void add_push_rule_routes(Router& router, Services& services);
// POST /user/{userId}/filter, GET /user/{userId}/filter/{filterId}.
void add_filter_routes(Router& router, Services& services);
// GET /profile/{userId}, GET/PUT /profile/{userId}/{keyName}.
void add_profile_routes(Router& router, Services& services);
// GET/PUT /user/{userId}/account_data/{type} and /user/{userId}/rooms/{roomId}/account_data/….
void add_account_data_routes(Router& router, Services& services);
// GET /joined_rooms, GET /voip/turnServer, GET /thirdparty/protocols (honestly empty).
void add_empty_answer_routes(Router& router, Services& services);
// GET /user/{userId}/rooms/{roomId}/tags, PUT/DELETE …/tags/{tag} (room account data m.tag).
void add_room_tag_routes(Router& router, Services& services);
// GET /account/3pid (none), and the 3PID changes the server refuses (threepids.cpp).
void add_threepid_routes(Router& router, Services& services);
// PUT/GET /presence/{userId}/status (in memory, per process).
void add_presence_routes(Router& router, Services& services);
// GET /pushers (none), POST /pushers/set (deletion only; the server sends no push).
void add_pusher_routes(Router& router, Services& services);
// GET /room_keys/version (404 M_NOT_FOUND: no backup), POST: not implemented.
void add_key_backup_routes(Router& router, Services& services);
// POST /keys/upload, /keys/query, /keys/claim, GET /keys/changes.
void add_e2e_key_routes(Router& router, Services& services);
// POST /keys/device_signing/upload (also /_matrix/client/unstable), /keys/signatures/upload.
void add_cross_signing_routes(Router& router, Services& services);
// PUT /sendToDevice/{eventType}/{txnId}.
void add_to_device_routes(Router& router, Services& services);
void add_sync_routes(Router& router, Services& services);
// PUT /rooms/{roomId}/typing/{userId}.
void add_typing_routes(Router& router, Services& services);
// POST /rooms/{roomId}/receipt/{receiptType}/{eventId}, POST /rooms/{roomId}/read_markers.
void add_receipt_routes(Router& router, Services& services);

// All of the above.
void add_client_routes(Router& router, Services& services);

}  // namespace myelin::api::client
