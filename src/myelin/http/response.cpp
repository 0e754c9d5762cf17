#include "myelin/http/response.hpp"

#include <boost/json/serialize.hpp>

#include "myelin/core/log.hpp"

namespace myelin::http {

Response json_response(const boost::json::value& json, int status) {
    Response r;
    r.status = status;
    r.body = boost::json::serialize(json);
    return r;
}

Response error_response(const Error& error) {
    boost::json::object body;
    if (!error.body_is_extra_only) {
        body["errcode"] = error.errcode;
        if (error.status == 500) {
            constexpr std::string_view kPublicText = "Internal server error";
            if (error.message != kPublicText) {
                myelin::log::app()->error("answered 500: {}", error.message);
            }
            body["error"] = kPublicText;
        } else {
            body["error"] = error.message;
        }
    }
    for (const auto& [k, v] : error.extra) body[k] = v;
    Response r = json_response(body, error.status);
    if (error.retry_after_s > 0) {
        r.headers.emplace_back("Retry-After", std::to_string(error.retry_after_s));
    }
    return r;
}

}  // namespace myelin::http
