#pragma once

// The request as handlers see it: Beast types stay inside http/server.cpp. A Request is owned by
// the connection that read it and lives until its response has been written.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace myelin::http {

enum class Method { kGet, kPost, kPut, kDelete, kOptions, kHead, kPatch, kOther };

// "GET", "POST", ... ("OTHER" for kOther).
std::string_view method_name(Method m);

struct Request {
    Method method = Method::kOther;
    std::string method_text;  // as sent, for logs
    std::string target;       // raw request target, e.g. "/_matrix/client/v3/login?x=1"
    std::string path;         // percent-decoded path, no query
    std::string raw_path;     // path as sent (still percent-encoded)
    std::vector<std::pair<std::string, std::string>> query;  // decoded query parameters
    std::string authorization;  // the Authorization header, empty if absent
    std::string content_type;   // the Content-Type header, empty if absent
    std::string forwarded_for;  // X-Forwarded-For, empty if absent
    std::string user_agent;
    std::string body;
    std::string remote_ip;   // the peer address of the connection
    std::string request_id;  // unique per request, echoed in X-Request-Id and the access log
    std::vector<std::string> path_params;  // filled by the router: decoded {placeholders}

    // Empties every field but keeps the strings' capacity (a connection reuses its Request).
    void clear();

    // The first query parameter named `name`, or nullopt.
    std::optional<std::string_view> query_param(std::string_view name) const;
};

}  // namespace myelin::http
