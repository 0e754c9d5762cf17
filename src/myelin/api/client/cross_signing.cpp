// Cross-signing endpoints (cross_signing.yaml): POST /keys/device_signing/upload (also under
// /_matrix/client/unstable, where matrix-js-sdk's legacy crypto sends it) and POST
// /keys/signatures/upload. The checks and storage are CrossSigningService's; the handlers parse
// the bodies and run User-Interactive Authentication when a stored master key would be replaced.

#include <boost/json.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/cross_signing_service.hpp"
#include "myelin/service/uia.hpp"

namespace myelin::api::client {
namespace {

constexpr std::size_t kSigningBodyLimit = 1024 * 1024;
// How many signed keys one signature upload may carry. Each is checked (ed25519, ~0.1 ms) in
// the write job, so this bounds the time one request holds the SQLite writer (~0.1 s); clients
// sign a handful of keys at a time.
constexpr std::size_t kMaxSignedKeys = 1000;

// The optional key `field` of the body: absent or null gives nullopt.
Result<std::optional<boost::json::object>> optional_key(const boost::json::object& body,
                                                        std::string_view field) {
    const auto* value = body.if_contains(field);
    if (value == nullptr || value->is_null()) return std::optional<boost::json::object>();
    if (!value->is_object()) return errors::bad_json(std::string(field) + " must be an object");
    return std::optional<boost::json::object>(value->get_object());
}

// POST /keys/device_signing/upload: body {master_key?, self_signing_key?, user_signing_key?,
// auth?} → {}. Replacing stored keys when the user has a master key needs UIA
// (m.login.password); a first upload or a repeat of the stored keys does not (spec v1.11).
// Errors: 400 M_NOT_JSON / M_BAD_JSON / M_INVALID_PARAM (shapes, another user's key),
// M_MISSING_PARAM (no master key), M_INVALID_SIGNATURE (not signed by the master key), 401 UIA,
// 403 M_FORBIDDEN (a public key equal to a device ID; UIA session of another endpoint or user),
// 429, 503.
boost::asio::awaitable<Result<http::Response>> post_device_signing_upload(Services& services,
                                                                          RequestContext& ctx) {
    const auto& id = *ctx.identity;
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    service::SigningKeyUpload upload;
    upload.user_id = id.user_id();
    auto master = optional_key(*body, "master_key");
    if (!master) co_return master.error();
    upload.master = std::move(*master);
    auto self_signing = optional_key(*body, "self_signing_key");
    if (!self_signing) co_return self_signing.error();
    upload.self_signing = std::move(*self_signing);
    auto user_signing = optional_key(*body, "user_signing_key");
    if (!user_signing) co_return user_signing.error();
    upload.user_signing = std::move(*user_signing);
    auto auth = optional_key(*body, "auth");
    if (!auth) co_return auth.error();

    auto first = services.client_data.cross_signing.upload_keys(upload, false);
    auto outcome = co_await std::move(first);
    if (!outcome) co_return outcome.error();
    if (*outcome == service::SigningKeyUploadOutcome::kNeedsAuthentication) {
        service::UiaChallenge challenge;
        challenge.endpoint = "POST /keys/device_signing/upload";
        challenge.user_id = id.user_id();
        challenge.flows = {{std::string(service::kStagePassword)}};
        const boost::json::object* auth_object = nullptr;
        if (*auth) auth_object = &**auth;
        auto uia_op = services.uia.authenticate(auth_object, std::move(challenge));
        auto completed = co_await std::move(uia_op);
        if (!completed) co_return completed.error();
        auto second = services.client_data.cross_signing.upload_keys(std::move(upload), true);
        outcome = co_await std::move(second);
        if (!outcome) co_return outcome.error();
    }
    co_return http::json_response(boost::json::object{});
}

// POST /keys/signatures/upload: body {user: {key_id: signed key}} → {"failures": {user:
// {key_id: error}}}. Errors (of the whole request): 400 M_NOT_JSON / M_BAD_JSON, 503; a
// signature that fails is reported under failures and the others are stored.
boost::asio::awaitable<Result<http::Response>> post_signatures_upload(Services& services,
                                                                      RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    service::SignatureUploads uploads;
    std::size_t entries = 0;
    for (const auto& [user, keys] : *body) {
        const auto* map = keys.if_object();
        if (map == nullptr) co_return errors::bad_json("The body must map user IDs to objects");
        entries += map->size();
        if (entries > kMaxSignedKeys) co_return errors::bad_json("Too many signed keys");
        auto& of_user = uploads[std::string(user)];
        for (const auto& [key_id, signed_key] : *map) of_user[std::string(key_id)] = signed_key;
    }
    auto op = services.client_data.cross_signing.upload_signatures(ctx.identity->user_id(),
                                                                   std::move(uploads));
    auto failures = co_await std::move(op);
    if (!failures) co_return failures.error();
    boost::json::object out;
    for (auto& [user, keys] : *failures) {
        boost::json::object of_user;
        for (auto& [key_id, error] : keys) of_user[key_id] = std::move(error);
        out[user] = std::move(of_user);
    }
    co_return http::json_response(boost::json::object{{"failures", std::move(out)}});
}

}  // namespace

void add_cross_signing_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    for (auto [mount, path] :
         {std::pair{Mount::kClient, std::string("/keys/device_signing/upload")},
          std::pair{Mount::kExact,
                    std::string("/_matrix/client/unstable/keys/device_signing/upload")}}) {
        router.add(Route{.method = http::Method::kPost,
                         .mount = mount,
                         .path = path,
                         .auth = AuthPolicy::kRequired,
                         .rate_class = RateClass::kAuthenticated,
                         .body_limit = kSigningBodyLimit,
                         .async = [&services](RequestContext& ctx) {
                             return post_device_signing_upload(services, ctx);
                         }});
    }
    routes.add(http::Method::kPost, "/keys/signatures/upload", post_signatures_upload,
               kSigningBodyLimit);
}

}  // namespace myelin::api::client
