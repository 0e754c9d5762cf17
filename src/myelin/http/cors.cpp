#include "myelin/http/cors.hpp"

#include <array>

namespace myelin::http {
namespace {

// Expose-Headers lets browser clients read Retry-After (rate limits, 503) and the request id
// they may quote in a bug report.
constexpr std::array<HeaderField, 4> kCorsHeaders = {{
    {"Access-Control-Allow-Origin", "*"},
    {"Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"},
    {"Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization"},
    {"Access-Control-Expose-Headers", "Retry-After, X-Request-Id"},
}};

}  // namespace

std::span<const HeaderField> cors_headers() { return kCorsHeaders; }

}  // namespace myelin::http
