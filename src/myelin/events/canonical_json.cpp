#include "myelin/events/canonical_json.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <boost/json/parse.hpp>

namespace myelin::events {

namespace json = boost::json;

namespace {

// The JSON path of the value being visited, for error messages ("content.body", "users[2]").
class Path {
public:
    void push_key(std::string_view key) {
        marks_.push_back(text_.size());
        if (!text_.empty()) text_ += '.';
        text_.append(key);
    }
    void push_index(std::size_t i) {
        marks_.push_back(text_.size());
        text_ += '[' + std::to_string(i) + ']';
    }
    void pop() {
        text_.resize(marks_.back());
        marks_.pop_back();
    }
    std::string where() const { return text_.empty() ? std::string("top level") : text_; }

private:
    std::string text_;
    std::vector<std::size_t> marks_;
};

Error bad(const Path& path, std::string_view problem) {
    return errors::bad_json("Not canonical JSON at " + path.where() + ": " + std::string(problem));
}

// The integer a canonical number stands for, or nullopt when it is not one.
std::optional<std::int64_t> canonical_integer(const json::value& v) {
    if (v.is_int64()) {
        const std::int64_t i = v.get_int64();
        if (i < kMinSafeInteger || i > kMaxSafeInteger) return std::nullopt;
        return i;
    }
    if (v.is_uint64()) {
        const std::uint64_t u = v.get_uint64();
        if (u > static_cast<std::uint64_t>(kMaxSafeInteger)) return std::nullopt;
        return static_cast<std::int64_t>(u);
    }
    const double d = v.get_double();
    if (!std::isfinite(d) || std::trunc(d) != d) return std::nullopt;
    if (d < static_cast<double>(kMinSafeInteger) || d > static_cast<double>(kMaxSafeInteger)) {
        return std::nullopt;
    }
    return static_cast<std::int64_t>(d);  // -0.0 becomes 0
}

Error number_error(const Path& path, const json::value& v) {
    if (v.is_double() && std::isfinite(v.get_double()) &&
        std::trunc(v.get_double()) != v.get_double()) {
        return bad(path, "floats are not allowed");
    }
    return bad(path, "numbers must be integers in [-(2^53)+1, (2^53)-1]");
}

void append_escaped(std::string& out, std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out += '"';
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (u < 0x20) {
                    out += "\\u00";
                    out += kHex[u >> 4];
                    out += kHex[u & 0xF];
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

std::vector<const json::key_value_pair*> sorted_members(const json::object& o) {
    std::vector<const json::key_value_pair*> members;
    members.reserve(o.size());
    for (const auto& kv : o) members.push_back(&kv);
    // std::string_view compares through char_traits<char>, i.e. as unsigned bytes; UTF-8 byte
    // order is code point order.
    std::sort(members.begin(), members.end(),
              [](const json::key_value_pair* a, const json::key_value_pair* b) {
                  return a->key() < b->key();
              });
    return members;
}

std::optional<Error> encode(const json::value& v, std::string& out, Path& path, int depth) {
    if (depth > kMaxCanonicalDepth) return bad(path, "nested too deeply");
    switch (v.kind()) {
        case json::kind::null:
            out += "null";
            return std::nullopt;
        case json::kind::bool_:
            out += v.get_bool() ? "true" : "false";
            return std::nullopt;
        case json::kind::int64:
        case json::kind::uint64:
        case json::kind::double_: {
            const auto i = canonical_integer(v);
            if (!i) return number_error(path, v);
            out += std::to_string(*i);
            return std::nullopt;
        }
        case json::kind::string: {
            const json::string& s = v.get_string();
            if (!is_valid_utf8(s)) return bad(path, "string is not valid UTF-8");
            append_escaped(out, s);
            return std::nullopt;
        }
        case json::kind::array: {
            out += '[';
            std::size_t i = 0;
            for (const json::value& item : v.get_array()) {
                if (i != 0) out += ',';
                path.push_index(i);
                if (auto e = encode(item, out, path, depth + 1)) return e;
                path.pop();
                ++i;
            }
            out += ']';
            return std::nullopt;
        }
        case json::kind::object: {
            out += '{';
            bool first = true;
            for (const json::key_value_pair* kv : sorted_members(v.get_object())) {
                if (!first) out += ',';
                first = false;
                if (!is_valid_utf8(kv->key())) return bad(path, "object key is not valid UTF-8");
                append_escaped(out, kv->key());
                out += ':';
                path.push_key(kv->key());
                if (auto e = encode(kv->value(), out, path, depth + 1)) return e;
                path.pop();
            }
            out += '}';
            return std::nullopt;
        }
    }
    return bad(path, "unknown value kind");
}

std::optional<Error> normalise(json::value& v, Path& path, int depth) {
    if (depth > kMaxCanonicalDepth) return bad(path, "nested too deeply");
    switch (v.kind()) {
        case json::kind::null:
        case json::kind::bool_:
            return std::nullopt;
        case json::kind::int64:
        case json::kind::uint64:
        case json::kind::double_: {
            const auto i = canonical_integer(v);
            if (!i) return number_error(path, v);
            v = *i;
            return std::nullopt;
        }
        case json::kind::string:
            if (!is_valid_utf8(v.get_string())) return bad(path, "string is not valid UTF-8");
            return std::nullopt;
        case json::kind::array: {
            std::size_t i = 0;
            for (json::value& item : v.get_array()) {
                path.push_index(i++);
                if (auto e = normalise(item, path, depth + 1)) return e;
                path.pop();
            }
            return std::nullopt;
        }
        case json::kind::object:
            for (json::key_value_pair& kv : v.get_object()) {
                if (!is_valid_utf8(kv.key())) return bad(path, "object key is not valid UTF-8");
                path.push_key(kv.key());
                if (auto e = normalise(kv.value(), path, depth + 1)) return e;
                path.pop();
            }
            return std::nullopt;
    }
    return bad(path, "unknown value kind");
}

}  // namespace

bool is_valid_utf8(std::string_view text) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    while (p < end) {
        const unsigned char c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;  // continuation byte, overlong lead (C0, C1) or above F4
        }
        if (static_cast<std::size_t>(end - p) <= n) return false;
        for (std::size_t i = 1; i <= n; ++i) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;  // overlong
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;                        // surrogate
        if (cp > 0x10FFFF) return false;
        p += n + 1;
    }
    return true;
}

bool is_canonical_integer(const json::value& value) noexcept {
    if (value.is_int64()) {
        const std::int64_t i = value.get_int64();
        return i >= kMinSafeInteger && i <= kMaxSafeInteger;
    }
    if (value.is_uint64()) return value.get_uint64() <= static_cast<std::uint64_t>(kMaxSafeInteger);
    return false;
}

Result<std::string> encode_canonical_json(const json::value& value) {
    std::string out;
    Path path;
    if (auto e = encode(value, out, path, 0)) return *e;
    return out;
}

Result<json::value> normalise_canonical_json(const json::value& value) {
    json::value copy = value;
    Path path;
    if (auto e = normalise(copy, path, 0)) return *e;
    return copy;
}

Result<json::value> parse_canonical_json(std::string_view text) {
    boost::system::error_code ec;
    json::value parsed = json::parse(text, ec);
    if (ec) return errors::not_json("Content not JSON: " + ec.message());
    return normalise_canonical_json(parsed);
}

}  // namespace myelin::events
