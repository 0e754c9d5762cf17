#pragma once

// The route table: method + path template → handler and its policy (authentication, rate-limit
// class, body limit). Built once at start-up, then read-only and safe to share between threads.
// Client routes are registered once and answer under both /_matrix/client/v3 and /r0.

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "myelin/core/error.hpp"
#include "myelin/http/request.hpp"
#include "myelin/http/response.hpp"
#include "myelin/service/identity.hpp"

namespace myelin::api {

enum class AuthPolicy {
    kNone,          // no token needed; an Authorization header is ignored
    kRequired,      // a valid access token
    kAllowExpired,  // a valid access token, even past its expiry (logout)
};

// Which rate-limit bucket a route draws from (the limiter itself arrives with issue #4).
enum class RateClass { kNone, kLogin, kRegister, kRefresh, kTokenValidity, kAuthenticated };

// Where a route's template is mounted.
enum class Mount {
    kClient,    // /_matrix/client/v3{t} and /_matrix/client/r0{t}
    kClientV1,  // /_matrix/client/v1{t}
    kExact,     // {t} as written
};

struct RequestContext {
    http::Request& request;
    const service::Identity* identity = nullptr;  // set when the route authenticated
};

using SyncHandler = std::function<Result<http::Response>(RequestContext&)>;
using AsyncHandler = std::function<boost::asio::awaitable<Result<http::Response>>(RequestContext&)>;

struct Route {
    http::Method method = http::Method::kGet;
    Mount mount = Mount::kClient;
    std::string path;  // template; "{name}" matches one decoded segment
    AuthPolicy auth = AuthPolicy::kNone;
    RateClass rate_class = RateClass::kNone;
    std::size_t body_limit = 0;  // bytes; 0: the server default
    SyncHandler sync;            // exactly one of sync/async is set
    AsyncHandler async;
};

class Router {
public:
    // Adds a route. Call only before serving.
    void add(Route route);

    struct Match {
        const Route* route = nullptr;     // null: no route
        bool path_known = false;          // some route has this path (405 when !route)
        std::vector<std::string> params;  // decoded placeholder values
        std::string allow;                // "GET, POST" for the 405 Allow header
    };

    // Finds the route for a method and decoded path.
    Match match(http::Method method, std::string_view path) const;

private:
    struct Entry {
        std::vector<std::string> segments;  // "{…}" marks a placeholder
        std::size_t route_index = 0;
    };
    std::vector<Route> routes_;
    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    // Placeholder-free paths; looked up by string_view without allocating.
    std::unordered_map<std::string, std::vector<std::size_t>, StringHash, std::equal_to<>> exact_;
    std::vector<Entry> templated_;
};

}  // namespace myelin::api
