#include "myelin/json/write.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace myelin::json {
namespace {

// Whether `u` must be escaped inside a JSON string.
constexpr bool needs_escape(unsigned char u) { return u < 0x20 || u == '"' || u == '\\'; }

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;

// Whether one of the 8 bytes of `w` may need an escape (exact as a yes/no answer: the
// "hasless" and "haszero" word tests).
constexpr bool word_may_need_escape(std::uint64_t w) {
    const std::uint64_t control = (w - kOnes * 0x20) & ~w & kHighBits;
    const std::uint64_t quote = w ^ (kOnes * '"');
    const std::uint64_t backslash = w ^ (kOnes * '\\');
    return (control | ((quote - kOnes) & ~quote & kHighBits) |
            ((backslash - kOnes) & ~backslash & kHighBits)) != 0;
}

void append_escape(std::string& out, unsigned char u) {
    static constexpr char kHex[] = "0123456789abcdef";
    switch (u) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        default: {
            const char escaped[] = {'\\', 'u', '0', '0', kHex[u >> 4], kHex[u & 0xf]};
            out.append(escaped, sizeof escaped);
        }
    }
}

}  // namespace

void append_string(std::string& out, std::string_view text) {
    out += '"';
    // Runs of characters that need no escape (nearly all of them) are appended in one go; they
    // are found eight bytes at a time, and only a word that may hold one is looked at closely.
    std::size_t run = 0;
    std::size_t i = 0;
    const std::size_t n = text.size();
    while (i < n) {
        if (n - i >= 8) {
            std::uint64_t w = 0;
            std::memcpy(&w, text.data() + i, sizeof w);
            if (!word_may_need_escape(w)) {
                i += 8;
                continue;
            }
        }
        for (const std::size_t stop = std::min(n, i + 8); i < stop; ++i) {
            const auto u = static_cast<unsigned char>(text[i]);
            if (!needs_escape(u)) continue;
            out.append(text.data() + run, i - run);
            append_escape(out, u);
            run = i + 1;
        }
    }
    out.append(text.data() + run, n - run);
    out += '"';
}

}  // namespace myelin::json
