// End-to-end key endpoints (keys.yaml) that clients call at start-up, storing and relaying only:
// POST /keys/upload, POST /keys/query, POST /keys/claim, GET /keys/changes. The server never
// decrypts or verifies anything: the signatures in device keys are the clients' business. Only
// local users are served; users of other servers are reported under `failures` (no federation
// yet). Cross-signing keys are uploaded through cross_signing.cpp; /keys/query returns them
// with the uploaded signatures merged in.

#include <boost/json.hpp>

#include "myelin/api/client/own_user.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/json/body.hpp"
#include "myelin/service/e2e_key_service.hpp"

namespace myelin::api::client {
namespace {

// Larger bodies than the default: an upload carries up to a few hundred signed keys, a query
// or claim names many users.
constexpr std::size_t kKeysBodyLimit = 1024 * 1024;
// How many users and devices one query or claim may name.
constexpr std::size_t kMaxKeyRequestEntries = 10000;

Error bad(std::string message) { return errors::bad_json(std::move(message)); }

// The server name of a user ID ("" when malformed).
std::string_view server_of(std::string_view user_id) {
    auto colon = user_id.find(':');
    if (colon == std::string_view::npos) return {};
    return user_id.substr(colon + 1);
}

// The DeviceKeys object of an upload: user_id and device_id must be the caller's, algorithms a
// list of strings, keys an object of strings, signatures an object.
Result<void> check_device_keys(const boost::json::object& keys, const service::Identity& id) {
    const auto* user = keys.if_contains("user_id");
    const auto* device = keys.if_contains("device_id");
    if (user == nullptr || !user->is_string() || device == nullptr || !device->is_string()) {
        return bad("device_keys needs string user_id and device_id");
    }
    if (user->get_string() != id.user_id() || device->get_string() != id.device_id()) {
        return bad("device_keys must be those of the device making the request");
    }
    const auto* algorithms = keys.if_contains("algorithms");
    if (algorithms == nullptr || !algorithms->is_array()) {
        return bad("device_keys.algorithms must be an array");
    }
    for (const auto& a : algorithms->get_array()) {
        if (!a.is_string()) return bad("device_keys.algorithms must hold strings");
    }
    const auto* key_map = keys.if_contains("keys");
    if (key_map == nullptr || !key_map->is_object()) {
        return bad("device_keys.keys must be an object");
    }
    for (const auto& [name, value] : key_map->get_object()) {
        if (!value.is_string()) return bad("device_keys.keys must map to strings");
    }
    const auto* signatures = keys.if_contains("signatures");
    if (signatures == nullptr || !signatures->is_object()) {
        return bad("device_keys.signatures must be an object");
    }
    return {};
}

// A map of "algorithm:key_id" to a key (a string or an object) into records.
Result<std::vector<storage::E2eKeyRecord>> parse_keys(const boost::json::object& body,
                                                      std::string_view field) {
    std::vector<storage::E2eKeyRecord> out;
    const auto* value = body.if_contains(field);
    if (value == nullptr || value->is_null()) return out;
    const auto* keys = value->if_object();
    if (keys == nullptr) return bad(std::string(field) + " must be an object");
    for (const auto& [name, key] : *keys) {
        auto colon = name.find(':');
        if (colon == boost::json::string_view::npos || colon == 0 || colon + 1 == name.size() ||
            name.size() > 255) {
            return bad(std::string(field) + " keys must be named <algorithm>:<key_id>");
        }
        if (!key.is_string() && !key.is_object()) {
            return bad(std::string(field) + " values must be strings or objects");
        }
        storage::E2eKeyRecord record;
        record.algorithm = std::string(name.substr(0, colon));
        record.key_id = std::string(name.substr(colon + 1));
        record.key_json = boost::json::serialize(key);
        out.push_back(std::move(record));
    }
    return out;
}

boost::json::object counts_json(const std::vector<std::pair<std::string, std::int64_t>>& counts) {
    boost::json::object out;
    for (const auto& [algorithm, n] : counts) out[algorithm] = n;
    return out;
}

// POST /keys/upload: body {device_keys?, one_time_keys?, fallback_keys?} → {"one_time_key_counts"}.
// Errors: 400 M_NOT_JSON / M_BAD_JSON (shapes, device_keys of another user or device, two
// fallback keys of one algorithm), 503.
boost::asio::awaitable<Result<http::Response>> post_upload(Services& services,
                                                           RequestContext& ctx) {
    const auto& id = *ctx.identity;
    auto body = json::parse_object(ctx.request.body, true);
    if (!body) co_return body.error();
    service::KeyUpload upload;
    upload.user_id = id.user_id();
    upload.device_id = id.device_id();
    if (const auto* dk = body->if_contains("device_keys"); dk != nullptr && !dk->is_null()) {
        if (!dk->is_object()) co_return bad("device_keys must be an object");
        if (auto r = check_device_keys(dk->get_object(), id); !r) co_return r.error();
        upload.device_keys = boost::json::serialize(*dk);
    }
    auto one_time = parse_keys(*body, "one_time_keys");
    if (!one_time) co_return one_time.error();
    upload.one_time = std::move(*one_time);
    auto fallback = parse_keys(*body, "fallback_keys");
    if (!fallback) co_return fallback.error();
    for (std::size_t i = 0; i < fallback->size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if ((*fallback)[i].algorithm == (*fallback)[j].algorithm) {
                co_return bad("At most one fallback key per algorithm");
            }
        }
    }
    upload.fallback = std::move(*fallback);
    auto op = services.client_data.keys.upload(std::move(upload));
    auto counts = co_await std::move(op);
    if (!counts) co_return counts.error();
    co_return http::json_response(
        boost::json::object{{"one_time_key_counts", counts_json(*counts)}});
}

// POST /keys/query: body {"device_keys": {user: [device, ...]}, "timeout"?} →
// {"device_keys": {user: {device: DeviceKeys + unsigned.device_display_name}}, "failures",
// "master_keys", "self_signing_keys", "user_signing_keys" (the caller's own only)}, uploaded
// signatures merged in.
// Errors: 400 M_NOT_JSON / M_BAD_JSON / M_MISSING_PARAM, 503.
boost::asio::awaitable<Result<http::Response>> post_query(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto requested = json::optional_object(*body, "device_keys");
    if (!requested) co_return requested.error();
    if (*requested == nullptr) co_return errors::missing_param("Missing 'device_keys'");
    std::map<std::string, std::vector<std::string>> users;
    std::vector<std::string> local_users;
    boost::json::object failures;
    std::size_t entries = 0;
    for (const auto& [user, devices] : **requested) {
        const auto* list = devices.if_array();
        if (list == nullptr) co_return bad("device_keys must map user IDs to arrays");
        entries += 1 + list->size();
        if (entries > kMaxKeyRequestEntries) co_return bad("Too many users or devices");
        std::vector<std::string> ids;
        for (const auto& d : *list) {
            if (!d.is_string()) co_return bad("Device IDs must be strings");
            ids.emplace_back(d.get_string());
        }
        auto server = server_of(user);
        if (server != services.config.server_name) {
            // No federation yet: other servers cannot be asked.
            if (!server.empty()) failures[server] = boost::json::object{};
            continue;
        }
        local_users.emplace_back(user);
        users.emplace(std::string(user), std::move(ids));
    }
    auto op = services.client_data.keys.query(ctx.identity->user_id(), std::move(users));
    auto found = co_await std::move(op);
    if (!found) co_return found.error();
    boost::json::object device_keys;
    for (const auto& user : local_users) device_keys[user] = boost::json::object{};
    for (const auto& [user, devices] : found->devices) {
        auto& of_user = device_keys[user].as_object();
        for (const auto& d : devices) {
            boost::system::error_code ec;
            auto value = boost::json::parse(d.key_json, ec);
            if (ec || !value.is_object()) continue;
            if (d.display_name) {
                value.as_object()["unsigned"] =
                    boost::json::object{{"device_display_name", *d.display_name}};
            }
            of_user[d.device_id] = std::move(value);
        }
    }
    boost::json::object out{{"device_keys", std::move(device_keys)}, {"failures", failures}};
    for (auto [field, keys] : {std::pair{"master_keys", &found->master_keys},
                               std::pair{"self_signing_keys", &found->self_signing_keys},
                               std::pair{"user_signing_keys", &found->user_signing_keys}}) {
        boost::json::object of_users;
        for (const auto& [user, key_json] : *keys) {
            boost::system::error_code ec;
            auto value = boost::json::parse(key_json, ec);
            if (!ec) of_users[user] = std::move(value);
        }
        out[field] = std::move(of_users);
    }
    co_return http::json_response(out);
}

// POST /keys/claim: body {"one_time_keys": {user: {device: algorithm}}, "timeout"?} →
// {"one_time_keys": {user: {device: {"alg:id": key}}}, "failures"}. Each one-time key goes to one
// claimer only; a device without one gives its fallback key. Errors: 400 M_NOT_JSON /
// M_BAD_JSON / M_MISSING_PARAM, 503.
boost::asio::awaitable<Result<http::Response>> post_claim(Services& services, RequestContext& ctx) {
    auto body = json::parse_object(ctx.request.body);
    if (!body) co_return body.error();
    auto requested = json::optional_object(*body, "one_time_keys");
    if (!requested) co_return requested.error();
    if (*requested == nullptr) co_return errors::missing_param("Missing 'one_time_keys'");
    service::KeyClaims claims;
    boost::json::object failures;
    std::size_t entries = 0;
    for (const auto& [user, devices] : **requested) {
        const auto* map = devices.if_object();
        if (map == nullptr) co_return bad("one_time_keys must map user IDs to objects");
        entries += 1 + map->size();
        if (entries > kMaxKeyRequestEntries) co_return bad("Too many users or devices");
        auto server = server_of(user);
        std::map<std::string, std::string> wanted;
        for (const auto& [device, algorithm] : *map) {
            if (!algorithm.is_string()) co_return bad("Algorithms must be strings");
            wanted.emplace(std::string(device), std::string(algorithm.get_string()));
        }
        if (server != services.config.server_name) {
            if (!server.empty()) failures[server] = boost::json::object{};
            continue;
        }
        claims.emplace(std::string(user), std::move(wanted));
    }
    auto op = services.client_data.keys.claim(std::move(claims));
    auto claimed = co_await std::move(op);
    if (!claimed) co_return claimed.error();
    boost::json::object out;
    for (const auto& [user, devices] : *claimed) {
        boost::json::object of_user;
        for (const auto& [device, key] : devices) {
            boost::system::error_code ec;
            auto value = boost::json::parse(key.second, ec);
            if (ec) continue;
            of_user[device] = boost::json::object{{key.first, std::move(value)}};
        }
        out[user] = std::move(of_user);
    }
    co_return http::json_response(
        boost::json::object{{"one_time_keys", std::move(out)}, {"failures", failures}});
}

// GET /keys/changes?from=&to=: {"changed": [], "left": []}. The tokens come from /sync, which
// does not exist yet, so nobody's changes can be placed between them; device-list changes are
// recorded (ReadTxn::device_list_changes_since) for when it does. Errors: 400 M_MISSING_PARAM.
Result<http::Response> get_changes(RequestContext& ctx) {
    if (!ctx.request.query_param("from")) return errors::missing_param("Missing 'from'");
    if (!ctx.request.query_param("to")) return errors::missing_param("Missing 'to'");
    return http::json_response(
        boost::json::object{{"changed", boost::json::array{}}, {"left", boost::json::array{}}});
}

}  // namespace

void add_e2e_key_routes(Router& router, Services& services) {
    AuthenticatedRoutes routes(router, services);
    routes.add(http::Method::kPost, "/keys/upload", post_upload, kKeysBodyLimit);
    routes.add(http::Method::kPost, "/keys/query", post_query, kKeysBodyLimit);
    routes.add(http::Method::kPost, "/keys/claim", post_claim, kKeysBodyLimit);
    routes.add(http::Method::kGet, "/keys/changes", get_changes);
}

}  // namespace myelin::api::client
