#include "myelin/json/write.hpp"

namespace myelin::json {
namespace {

// Whether `u` must be escaped inside a JSON string.
constexpr bool needs_escape(unsigned char u) { return u < 0x20 || u == '"' || u == '\\'; }

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
    // Runs of characters that need no escape (nearly all of them) are appended in one go.
    std::size_t run = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto u = static_cast<unsigned char>(text[i]);
        if (!needs_escape(u)) continue;
        out.append(text.data() + run, i - run);
        append_escape(out, u);
        run = i + 1;
    }
    out.append(text.data() + run, text.size() - run);
    out += '"';
}

}  // namespace myelin::json
