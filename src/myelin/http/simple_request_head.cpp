#include "myelin/http/simple_request_head.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace myelin::http {
namespace {

enum CharClass : std::uint8_t {
    kToken = 1,   // tchar (RFC 9110 5.6.2)
    kValue = 2,   // accepted inside a field value: visible ASCII, space, tab
    kTarget = 4,  // accepted in the request target: visible ASCII
};

constexpr std::array<std::uint8_t, 256> make_classes() {
    std::array<std::uint8_t, 256> table{};
    for (int c = 0x21; c <= 0x7e; ++c) table[c] = kValue | kTarget;
    table[' '] = kValue;
    table['\t'] = kValue;
    for (int c = '0'; c <= '9'; ++c) table[c] |= kToken;
    for (int c = 'a'; c <= 'z'; ++c) table[c] |= kToken;
    for (int c = 'A'; c <= 'Z'; ++c) table[c] |= kToken;
    for (char c : std::string_view("!#$%&'*+-.^_`|~"))
        table[static_cast<unsigned char>(c)] |= kToken;
    return table;
}
constexpr std::array<std::uint8_t, 256> kClasses = make_classes();

bool is(char c, CharClass cls) { return (kClasses[static_cast<unsigned char>(c)] & cls) != 0; }

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;

// Whether all 8 bytes of `w` lie in [low, 0x7e] (low <= 0x80): the "hasless" and "hasmore" word
// tests, each exact as a yes/no answer.
bool word_in_range(std::uint64_t w, unsigned low) {
    const std::uint64_t below = (w - kOnes * low) & ~w & kHighBits;
    const std::uint64_t above = ((w + kOnes * (127 - 0x7e)) | w) & kHighBits;
    return (below | above) == 0;
}

// Whether every byte of [begin, end) is of class `cls` (kValue or kTarget), eight at a time; a
// word that fails the range test (a tab in a value, or a bad byte) is looked at byte by byte.
bool all_of_class(const char* begin, const char* end, CharClass cls) {
    const unsigned low = cls == kTarget ? 0x21 : 0x20;
    const char* p = begin;
    for (; end - p >= 8; p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        if (word_in_range(w, low)) continue;
        for (int i = 0; i < 8; ++i) {
            if (!is(p[i], cls)) return false;
        }
    }
    for (; p < end; ++p) {
        if (!is(*p, cls)) return false;
    }
    return true;
}

// ASCII case-insensitive equality; `lower` is all lower case.
bool iequals_lower(std::string_view s, std::string_view lower) {
    if (s.size() != lower.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != lower[i]) return false;
    }
    return true;
}

std::optional<Method> method_of(std::string_view m) {
    switch (m.size()) {
        case 3:
            if (m == "GET") return Method::kGet;
            if (m == "PUT") return Method::kPut;
            break;
        case 4:
            if (m == "POST") return Method::kPost;
            if (m == "HEAD") return Method::kHead;
            break;
        case 5:
            if (m == "PATCH") return Method::kPatch;
            break;
        case 6:
            if (m == "DELETE") return Method::kDelete;
            break;
        case 7:
            if (m == "OPTIONS") return Method::kOptions;
            break;
        default:
            break;
    }
    return std::nullopt;
}

// Applies one field to `head`; false when the head is not simple.
bool take_field(std::string_view name, std::string_view value, SimpleRequestHead& head) {
    // Dispatch on the length first: most fields are none of these and cost one switch.
    switch (name.size()) {
        case 6:
            if (iequals_lower(name, "expect")) return false;
            break;
        case 7:
            if (iequals_lower(name, "upgrade")) return false;
            break;
        case 10:
            if (iequals_lower(name, "connection")) return iequals_lower(value, "keep-alive");
            if (iequals_lower(name, "user-agent") && head.user_agent.empty()) {
                head.user_agent = value;
            }
            break;
        case 12:
            if (iequals_lower(name, "content-type") && head.content_type.empty()) {
                head.content_type = value;
            }
            break;
        case 13:
            if (iequals_lower(name, "authorization") && head.authorization.empty()) {
                head.authorization = value;
            }
            break;
        case 14:
            if (iequals_lower(name, "content-length")) return false;
            break;
        case 15:
            if (iequals_lower(name, "x-forwarded-for")) {
                if (!head.forwarded_for.empty()) return false;  // several lines: Beast joins them
                head.forwarded_for = value;
            }
            break;
        case 17:
            if (iequals_lower(name, "transfer-encoding")) return false;
            break;
        default:
            break;
    }
    return true;
}

}  // namespace

std::optional<SimpleRequestHead> parse_simple_request_head(std::string_view bytes,
                                                           std::size_t max_header_bytes) noexcept {
    if (bytes.size() > max_header_bytes) bytes = bytes.substr(0, max_header_bytes);
    const char* const begin = bytes.data();
    const char* const end = begin + bytes.size();
    const char* p = begin;
    SimpleRequestHead head;

    // Request line: method SP target SP "HTTP/1.1" CRLF.
    const char* start = p;
    while (p < end && *p >= 'A' && *p <= 'Z') ++p;
    if (p == end || *p != ' ') return std::nullopt;
    const auto method = method_of(std::string_view(start, static_cast<std::size_t>(p - start)));
    if (!method) return std::nullopt;
    head.method = *method;
    head.method_text = std::string_view(start, static_cast<std::size_t>(p - start));
    start = ++p;
    p = static_cast<const char*>(std::memchr(p, ' ', static_cast<std::size_t>(end - p)));
    if (p == nullptr || p == start || !all_of_class(start, p, kTarget)) return std::nullopt;
    head.target = std::string_view(start, static_cast<std::size_t>(p - start));
    ++p;
    static constexpr std::string_view kVersion = "HTTP/1.1\r\n";
    if (static_cast<std::size_t>(end - p) < kVersion.size() ||
        std::string_view(p, kVersion.size()) != kVersion) {
        return std::nullopt;
    }
    p += kVersion.size();

    // Fields, up to the empty line.
    for (;;) {
        if (end - p < 2) return std::nullopt;  // incomplete
        if (p[0] == '\r') {
            if (p[1] != '\n') return std::nullopt;
            p += 2;
            break;
        }
        start = p;
        while (p < end && is(*p, kToken)) ++p;
        if (p == start || p == end || *p != ':') return std::nullopt;
        const std::string_view name(start, static_cast<std::size_t>(p - start));
        ++p;
        while (p < end && (*p == ' ' || *p == '\t')) ++p;
        start = p;
        p = static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(end - p)));
        if (p == nullptr || end - p < 2 || p[1] != '\n' || !all_of_class(start, p, kValue)) {
            return std::nullopt;
        }
        const char* value_end = p;
        while (value_end > start && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
        if (value_end == start) return std::nullopt;  // empty value
        p += 2;
        if (!take_field(name, std::string_view(start, static_cast<std::size_t>(value_end - start)),
                        head)) {
            return std::nullopt;
        }
    }
    head.header_bytes = static_cast<std::size_t>(p - begin);
    return head;
}

}  // namespace myelin::http
