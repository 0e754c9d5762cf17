#include "myelin/core/error.hpp"

#include <stdexcept>

namespace myelin {

void throw_exception_from_error(const Error& e, const boost::source_location&) {
    throw std::runtime_error("unexpected error result: " + e.errcode + ": " + e.message);
}

namespace errors {

Error make(int status, std::string_view errcode, std::string message) {
    Error e;
    e.status = status;
    e.errcode = std::string(errcode);
    e.message = std::move(message);
    return e;
}

Error unrecognized(std::string message) { return make(404, "M_UNRECOGNIZED", std::move(message)); }
Error method_not_allowed() { return make(405, "M_UNRECOGNIZED", "Method not allowed"); }
Error not_json(std::string message) { return make(400, "M_NOT_JSON", std::move(message)); }
Error bad_json(std::string message) { return make(400, "M_BAD_JSON", std::move(message)); }
Error missing_param(std::string message) {
    return make(400, "M_MISSING_PARAM", std::move(message));
}
Error invalid_param(std::string message) {
    return make(400, "M_INVALID_PARAM", std::move(message));
}
Error too_large(std::string message) { return make(413, "M_TOO_LARGE", std::move(message)); }
Error forbidden(std::string message) { return make(403, "M_FORBIDDEN", std::move(message)); }
Error missing_token() { return make(401, "M_MISSING_TOKEN", "Missing access token"); }
Error unknown_token(bool soft_logout, std::string message) {
    Error e = make(401, "M_UNKNOWN_TOKEN", std::move(message));
    e.extra["soft_logout"] = soft_logout;
    return e;
}
Error not_found(std::string message) { return make(404, "M_NOT_FOUND", std::move(message)); }
Error limit_exceeded(int retry_after_ms) {
    Error e = make(429, "M_LIMIT_EXCEEDED", "Too many requests");
    e.extra["retry_after_ms"] = retry_after_ms;
    e.retry_after_s = (retry_after_ms + 999) / 1000;
    if (e.retry_after_s < 1) e.retry_after_s = 1;
    return e;
}
Error unavailable(std::string message, int retry_after_s) {
    Error e = make(503, "M_UNKNOWN", std::move(message));
    e.retry_after_s = retry_after_s;
    return e;
}
Error internal(std::string message) { return make(500, "M_UNKNOWN", std::move(message)); }

}  // namespace errors
}  // namespace myelin
