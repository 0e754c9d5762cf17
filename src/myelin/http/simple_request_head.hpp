#pragma once

// A fast reader for the request heads nearly every client sends: an HTTP/1.1 request line and a
// few plain header lines, no body. http/server.cpp tries it on the bytes already read before it
// hands them to Boost.Beast's parser, which costs several times more per request (it walks
// every byte of every field and builds a field container). Anything outside that narrow shape is
// declined, and the server then parses the same bytes with Beast exactly as before: the fast
// reader is a subset of Beast's behaviour, never a second opinion (a unit test checks every head
// it accepts against Beast). A pure function: safe from any thread.

#include <cstddef>
#include <string_view>

#include "myelin/http/request.hpp"

namespace myelin::http {

// What the server needs from an accepted head. The views point into the bytes given to
// parse_simple_request_head().
struct SimpleRequestHead {
    Method method = Method::kOther;
    std::string_view method_text;  // "GET", "POST", ...
    std::string_view target;
    bool keep_alive = true;  // HTTP/1.1 without "Connection: close"
    // The first line of each, trimmed of spaces and tabs; empty when absent.
    std::string_view authorization;
    std::string_view content_type;
    std::string_view user_agent;
    std::string_view forwarded_for;  // at most one X-Forwarded-For line is accepted
    std::size_t header_bytes = 0;    // request line, fields and the empty line
};

// Reads the head at the start of `bytes` into `head` and returns true when it is complete within
// `max_header_bytes` and simple:
// method one of GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH; single spaces; a target of
// visible ASCII; "HTTP/1.1"; CRLF line ends; field names of token characters, values of visible
// ASCII, spaces and tabs, not empty; no Content-Length, Transfer-Encoding, Expect or Upgrade
// field, no Connection field other than "keep-alive", at most one X-Forwarded-For. False
// otherwise (incomplete, malformed or merely unusual; `head` is then unspecified): the caller
// parses with Beast. Never throws.
[[nodiscard]] bool parse_simple_request_head(std::string_view bytes, std::size_t max_header_bytes,
                                             SimpleRequestHead& head) noexcept;

}  // namespace myelin::http
