#include "myelin/http/request.hpp"

namespace myelin::http {

std::string_view method_name(Method m) {
    switch (m) {
        case Method::kGet:
            return "GET";
        case Method::kPost:
            return "POST";
        case Method::kPut:
            return "PUT";
        case Method::kDelete:
            return "DELETE";
        case Method::kOptions:
            return "OPTIONS";
        case Method::kHead:
            return "HEAD";
        case Method::kPatch:
            return "PATCH";
        case Method::kOther:
            return "OTHER";
    }
    return "OTHER";
}

void Request::clear() {
    method = Method::kOther;
    method_text.clear();
    target.clear();
    path.clear();
    raw_path.clear();
    query.clear();
    authorization.clear();
    content_type.clear();
    forwarded_for.clear();
    user_agent.clear();
    body.clear();
    remote_ip.clear();
    request_id.clear();
    path_params.clear();
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
    for (const auto& [k, v] : query) {
        if (k == name) return std::string_view(v);
    }
    return std::nullopt;
}

}  // namespace myelin::http
