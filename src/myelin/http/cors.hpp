#pragma once

// The CORS headers of the homeserver. The Matrix client-server API asks every response to allow
// any web origin (spec: "Web Browser Clients"), so the HTTP server adds these to every answer,
// its own 4xx/5xx included; a router answering OPTIONS preflights can reuse the same list.
// Plain constants: safe from any thread.

#include <span>
#include <string_view>

namespace myelin::http {

struct HeaderField {
    std::string_view name;
    std::string_view value;
};

// The four CORS headers (Access-Control-Allow-Origin, -Allow-Methods, -Allow-Headers,
// -Expose-Headers) in the order they are written. The views point at static storage.
std::span<const HeaderField> cors_headers();

}  // namespace myelin::http
