#pragma once

// Splitting an HTTP request target into the decoded path and query parameters the router and
// the handlers read. Used by http/server.cpp for every request (and by fuzz/fuzz_http_request).
// A pure function of its argument: safe from any thread.

#include "myelin/http/request.hpp"

namespace myelin::http {

// Splits request.target (origin-form, RFC 9112 3.2.1) into raw_path, the percent-decoded path
// and the decoded query parameters ('+' decodes to a space, as in HTML forms and Synapse),
// appended to request.query. Returns false when the target is not origin-form ("*",
// absolute-form, bad escapes) or when the decoded path or a decoded query key or value is not
// NUL-free UTF-8 (Matrix identifiers are UTF-8; PostgreSQL refuses malformed UTF-8 and cuts text
// at a NUL): such a request is answered 400 M_UNRECOGNIZED instead of reaching a router that
// compares decoded paths and handlers that hand the values on to storage. Never throws except
// std::bad_alloc.
[[nodiscard]] bool parse_target(Request& request);

}  // namespace myelin::http
