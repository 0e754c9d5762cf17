#include "myelin/http/simple_request_head.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>

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
    if (p < end && end - begin >= 8) {  // the tail as the range's last (overlapping) word
        std::uint64_t w;
        std::memcpy(&w, end - 8, sizeof w);
        if (word_in_range(w, low)) return true;
    }
    for (; p < end; ++p) {
        if (!is(*p, cls)) return false;
    }
    return true;
}

// ASCII case-insensitive equality of a field name or value (already checked: token characters,
// or visible ASCII and spaces) with `lower`, which holds only lower-case letters and '-': setting
// bit 0x20 maps 'A'-'Z' to 'a'-'z', and no other such character becomes a letter or '-' that
// way. Eight bytes at a time.
bool iequals_lower(std::string_view s, std::string_view lower) {
    if (s.size() != lower.size()) return false;
    std::size_t i = 0;
    for (; s.size() - i >= 8; i += 8) {
        std::uint64_t a;
        std::uint64_t b;
        std::memcpy(&a, s.data() + i, sizeof a);
        std::memcpy(&b, lower.data() + i, sizeof b);
        if ((a | kOnes * 0x20) != b) return false;
    }
    for (; i < s.size(); ++i) {
        if ((s[i] | 0x20) != lower[i]) return false;
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

bool parse_simple_request_head(std::string_view bytes, std::size_t max_header_bytes,
                               SimpleRequestHead& head) noexcept {
    if (bytes.size() > max_header_bytes) bytes = bytes.substr(0, max_header_bytes);
    const char* const begin = bytes.data();
    const char* const end = begin + bytes.size();
    const char* p = begin;
    head = SimpleRequestHead{};

    // Request line: method SP target SP "HTTP/1.1" CRLF.
    const char* start = p;
    while (p < end && *p >= 'A' && *p <= 'Z') ++p;
    if (p == end || *p != ' ') return false;
    const auto method = method_of(std::string_view(start, static_cast<std::size_t>(p - start)));
    if (!method) return false;
    head.method = *method;
    head.method_text = std::string_view(start, static_cast<std::size_t>(p - start));
    start = ++p;
    p = static_cast<const char*>(std::memchr(p, ' ', static_cast<std::size_t>(end - p)));
    if (p == nullptr || p == start || !all_of_class(start, p, kTarget)) return false;
    head.target = std::string_view(start, static_cast<std::size_t>(p - start));
    ++p;
    static constexpr std::string_view kVersion = "HTTP/1.1\r\n";
    if (static_cast<std::size_t>(end - p) < kVersion.size() ||
        std::string_view(p, kVersion.size()) != kVersion) {
        return false;
    }
    p += kVersion.size();

    // Fields, up to the empty line.
    for (;;) {
        if (end - p < 2) return false;  // incomplete
        if (p[0] == '\r') {
            if (p[1] != '\n') return false;
            p += 2;
            break;
        }
        start = p;
        while (p < end && is(*p, kToken)) ++p;
        if (p == start || p == end || *p != ':') return false;
        const std::string_view name(start, static_cast<std::size_t>(p - start));
        ++p;
        while (p < end && (*p == ' ' || *p == '\t')) ++p;
        start = p;
        p = static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(end - p)));
        if (p == nullptr || end - p < 2 || p[1] != '\n' || !all_of_class(start, p, kValue)) {
            return false;
        }
        const char* value_end = p;
        while (value_end > start && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
        if (value_end == start) return false;  // empty value
        p += 2;
        if (!take_field(name, std::string_view(start, static_cast<std::size_t>(value_end - start)),
                        head)) {
            return false;
        }
    }
    head.header_bytes = static_cast<std::size_t>(p - begin);
    return true;
}

}  // namespace myelin::http
