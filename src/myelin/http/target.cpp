#include "myelin/http/target.hpp"

#include <string>
#include <string_view>
#include <utility>

#include <boost/url/parse.hpp>

#include "myelin/core/utf8.hpp"

namespace myelin::http {
namespace {

// Whether `target` is a plain origin-form path (no query, no escapes) that needs no URL parser.
bool is_plain_path(std::string_view target) {
    if (target.empty() || target.front() != '/') return false;
    for (char c : target) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '/' || c == '-' || c == '.' || c == '_' ||
                        c == '~' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' ||
                        c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=' ||
                        c == ':' || c == '@';
        if (!ok) return false;
    }
    return true;
}

// Whether a decoded piece of the target can be passed on: Matrix identifiers are UTF-8, and
// PostgreSQL rejects malformed UTF-8 (an error) and cuts text at a NUL (another value).
bool is_clean_text(std::string_view text) {
    return text.find('\0') == std::string_view::npos && is_valid_utf8(text);
}

}  // namespace

bool parse_target(Request& request) {
    if (is_plain_path(request.target)) {  // the common case, without Boost.URL
        request.raw_path = request.target;
        request.path = request.target;
        return true;
    }
    auto url = boost::urls::parse_origin_form(request.target);
    if (!url) return false;
    request.raw_path = std::string_view(url->encoded_path());
    request.path = url->path();
    if (!is_clean_text(request.path)) return false;
    for (auto param : url->params()) {
        if (!is_clean_text(param.key) || !is_clean_text(param.value)) return false;
        request.query.emplace_back(std::move(param.key), std::move(param.value));
    }
    return true;
}

}  // namespace myelin::http
