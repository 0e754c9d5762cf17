#include "myelin/events/base64.hpp"

#include <sodium.h>

namespace myelin::events {

namespace {

std::string encode(std::span<const std::uint8_t> bytes, int variant) {
    std::string out(sodium_base64_ENCODED_LEN(bytes.size(), variant), '\0');
    sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), variant);
    out.resize(out.size() - 1);  // the terminating NUL libsodium writes
    return out;
}

// Decodes with the given alphabet ('+' '/' or '-' '_'). Written by hand rather than with
// sodium_base642bin because that one refuses non-zero trailing bits, which other
// implementations produce and accept: the spec's own test seed
// "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1" ends in such bits.
std::optional<std::vector<std::uint8_t>> decode(std::string_view text, char c62, char c63) {
    // Accept padding: strip up to two '=' when they bring the length to a multiple of four.
    if (!text.empty() && text.size() % 4 == 0) {
        std::size_t pad = 0;
        while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
        text.remove_suffix(pad);
    }
    if (text.size() % 4 == 1) return std::nullopt;
    std::vector<std::uint8_t> out;
    out.reserve(text.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (const char c : text) {
        std::uint32_t v = 0;
        if (c >= 'A' && c <= 'Z') {
            v = static_cast<std::uint32_t>(c - 'A');
        } else if (c >= 'a' && c <= 'z') {
            v = static_cast<std::uint32_t>(c - 'a' + 26);
        } else if (c >= '0' && c <= '9') {
            v = static_cast<std::uint32_t>(c - '0' + 52);
        } else if (c == c62) {
            v = 62;
        } else if (c == c63) {
            v = 63;
        } else {
            return std::nullopt;
        }
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xFF));
        }
    }
    return out;
}

}  // namespace

std::string encode_base64(std::span<const std::uint8_t> bytes) {
    return encode(bytes, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

std::string encode_base64_url(std::span<const std::uint8_t> bytes) {
    return encode(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text) {
    return decode(text, '+', '/');
}

std::optional<std::vector<std::uint8_t>> decode_base64_url(std::string_view text) {
    return decode(text, '-', '_');
}

std::optional<std::vector<std::uint8_t>> decode_base64_any(std::string_view text) {
    if (auto standard = decode_base64(text)) return standard;
    return decode_base64_url(text);
}

}  // namespace myelin::events
