#pragma once

// Errors as values. Every fallible operation that a client or operator can trigger returns
// myelin::Result<T>; the HTTP layer renders the Error as the Matrix error JSON
// {"errcode": ..., "error": ..., ...extra}. Plain values, safe to copy between threads.

#include <string>
#include <string_view>
#include <utility>

#include <boost/json/object.hpp>
#include <boost/system/result.hpp>

namespace myelin {

// A failure with the HTTP status and the Matrix errcode it answers with. `extra` holds further
// top-level keys of the error body (soft_logout, retry_after_ms, UIA flows ...).
// `retry_after_s` > 0 adds a Retry-After header. Never put a secret into `message`.
struct Error {
    // Not an aggregate on purpose: Result<bool> / Result<int> must not mistake a bool or an
    // integer for an Error (C++20 allows parenthesised aggregate initialisation).
    Error() = default;
    Error(int http_status, std::string code, std::string text)
        : status(http_status), errcode(std::move(code)), message(std::move(text)) {}

    int status = 500;
    std::string errcode = "M_UNKNOWN";
    std::string message;
    boost::json::object extra;
    int retry_after_s = 0;
    // When true the body is `extra` alone (no errcode/error): the first UIA 401 has no errcode.
    bool body_is_extra_only = false;
};

template <typename T>
using Result = boost::system::result<T, Error>;

// Lets `result.value()` throw on an error; the session boundary turns that into a 500.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

// Factories for the errors every layer uses, named after their errcode.
namespace errors {

Error make(int status, std::string_view errcode, std::string message);
Error unrecognized(std::string message = "Unrecognized request");  // 404 M_UNRECOGNIZED
Error method_not_allowed();                                        // 405 M_UNRECOGNIZED
Error not_json(std::string message = "Content not JSON.");         // 400 M_NOT_JSON
Error bad_json(std::string message);                               // 400 M_BAD_JSON
Error missing_param(std::string message);                          // 400 M_MISSING_PARAM
Error invalid_param(std::string message);                          // 400 M_INVALID_PARAM
Error too_large(std::string message = "Request body too large");   // 413 M_TOO_LARGE
Error forbidden(std::string message);                              // 403 M_FORBIDDEN
Error missing_token();                                             // 401 M_MISSING_TOKEN
Error unknown_token(bool soft_logout, std::string message = "Unknown access token");  // 401
Error not_found(std::string message);                           // 404 M_NOT_FOUND
Error limit_exceeded(int retry_after_ms);                       // 429 M_LIMIT_EXCEEDED
Error unavailable(std::string message, int retry_after_s = 5);  // 503 M_UNKNOWN + Retry-After
Error internal(std::string message = "Internal server error");  // 500 M_UNKNOWN

}  // namespace errors
}  // namespace myelin
