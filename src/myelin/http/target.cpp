#include "myelin/http/target.hpp"

#include <array>
#include <string>
#include <string_view>
#include <utility>

#include <boost/url/parse.hpp>

#include "myelin/core/utf8.hpp"

namespace myelin::http {
namespace {

// The characters of a plain path: unreserved, sub-delims, ':' '@' and '/' (no '%', no '?').
constexpr std::array<bool, 256> make_plain_path_table() {
    std::array<bool, 256> table{};
    for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
    for (int c = '0'; c <= '9'; ++c) table[c] = true;
    for (char c : std::string_view("/-._~!$&'()*+,;=:@"))
        table[static_cast<unsigned char>(c)] = true;
    return table;
}
constexpr std::array<bool, 256> kPlainPathChar = make_plain_path_table();

// Whether `target` is a plain origin-form path (no query, no escapes) that needs no URL parser.
bool is_plain_path(std::string_view target) {
    if (target.empty() || target.front() != '/') return false;
    bool ok = true;
    for (char c : target) ok &= kPlainPathChar[static_cast<unsigned char>(c)];
    return ok;
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
