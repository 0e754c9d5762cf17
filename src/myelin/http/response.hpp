#pragma once

// The response a handler produces. The HTTP layer adds CORS, Content-Length, Date-free
// headers and X-Request-Id; handlers only set status, body and any extra headers.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

#include "myelin/core/error.hpp"

namespace myelin::http {

struct Response {
    int status = 200;
    // A literal (or other storage that outlives the response); empty: no Content-Type.
    // A string_view because "application/json" is one byte past std::string's in-place capacity
    // and would cost an allocation on every response.
    std::string_view content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Allow, Retry-After)
    // Set by the authenticator for the access log: who made the request (never a token).
    std::string log_user;
};

// 200 (or `status`) with `json` serialised as the body.
Response json_response(const boost::json::value& json, int status = 200);

// The Matrix error body for `error`, with Retry-After when it asks for one. A 500's own text
// (which may name a table, a statement or a database's message) never reaches the client: the
// body says "Internal server error" and the text goes to the application log instead.
Response error_response(const Error& error);

}  // namespace myelin::http
