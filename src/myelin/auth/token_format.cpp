#include "myelin/auth/token_format.hpp"

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#include <sodium.h>

#include "myelin/auth/sodium_init.hpp"

namespace myelin::auth {
namespace {

constexpr std::string_view kAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static_assert(kAlphabet.size() == 62);

constexpr std::array<bool, 256> make_alphabet_table() {
    std::array<bool, 256> table{};
    for (char c : kAlphabet) table[static_cast<unsigned char>(c)] = true;
    return table;
}
constexpr std::array<bool, 256> kInAlphabet = make_alphabet_table();

bool all_in_alphabet(std::string_view s) noexcept {
    for (char c : s) {
        if (!kInAlphabet[static_cast<unsigned char>(c)]) return false;
    }
    return true;
}

// CRC-32 lookup tables for slicing by 8: kCrcTables[0] is the classic byte table of the
// reflected zip/PNG polynomial, kCrcTables[k] advances a byte that is k bytes further back.
using CrcTables = std::array<std::array<std::uint32_t, 256>, 8>;
constexpr CrcTables make_crc_tables() {
    CrcTables t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1U) != 0 ? (c >> 1) ^ 0xEDB88320U : c >> 1;
        t[0][i] = c;
    }
    for (std::size_t i = 0; i < 256; ++i) {
        for (std::size_t k = 1; k < 8; ++k)
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFU];
    }
    return t;
}
constexpr CrcTables kCrcTables = make_crc_tables();

// CRC-32 (zlib's crc32()), eight bytes per step: every token check runs it (a byte-at-a-time
// table costs about three times as much).
std::uint32_t crc32(std::string_view bytes) noexcept {
    const auto& t = kCrcTables;
    std::uint32_t crc = 0xFFFFFFFFU;
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t n = bytes.size();
    if constexpr (std::endian::native == std::endian::little) {
        for (; n >= 8; p += 8, n -= 8) {
            std::uint32_t lo = 0;
            std::uint32_t hi = 0;
            std::memcpy(&lo, p, 4);
            std::memcpy(&hi, p + 4, 4);
            lo ^= crc;
            crc = t[7][lo & 0xFFU] ^ t[6][(lo >> 8) & 0xFFU] ^ t[5][(lo >> 16) & 0xFFU] ^
                  t[4][lo >> 24] ^ t[3][hi & 0xFFU] ^ t[2][(hi >> 8) & 0xFFU] ^
                  t[1][(hi >> 16) & 0xFFU] ^ t[0][hi >> 24];
        }
    }
    for (; n > 0; ++p, --n) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFFU];
    return ~crc;
}

// CRC-32 (the zip/PNG polynomial) of `prefix_and_body`, as 6 base62 digits, most significant
// first, left-padded with '0'. 62^6 > 2^32, so 6 digits always suffice.
std::array<char, kTokenChecksumLength> checksum(std::string_view prefix_and_body) noexcept {
    std::uint32_t value = crc32(prefix_and_body);
    std::array<char, kTokenChecksumLength> out{};
    for (std::size_t i = kTokenChecksumLength; i-- > 0;) {
        out[i] = kAlphabet[value % 62];
        value /= 62;
    }
    return out;
}

}  // namespace

std::string generate_token(TokenKind kind) {
    ensure_sodium();
    std::string token;
    token.reserve(kTokenLength);
    token.append(kind == TokenKind::kAccess ? kAccessTokenPrefix : kRefreshTokenPrefix);
    // Each character is drawn uniformly by rejection sampling, as randombytes_uniform(62) does,
    // but from one buffered randombytes_buf() call instead of 43 (one getrandom() syscall each in
    // libsodium 1.0.18, ~13 µs per token). Bytes >= 248 = 4 * 62 are rejected, so `b % 62` is
    // exactly uniform; 64 bytes almost always suffice (P(refill) < 1e-9).
    constexpr unsigned kLimit = 256 - 256 % kAlphabet.size();  // 248
    std::array<unsigned char, 64> pool{};
    std::size_t used = pool.size();
    while (token.size() < kTokenPrefixLength + kTokenBodyLength) {
        if (used == pool.size()) {
            randombytes_buf(pool.data(), pool.size());
            used = 0;
        }
        const unsigned b = pool[used++];
        if (b < kLimit) token.push_back(kAlphabet[b % kAlphabet.size()]);
    }
    sodium_memzero(pool.data(), pool.size());
    const auto crc = checksum(token);
    token.push_back('_');
    token.append(crc.data(), crc.size());
    return token;
}

std::optional<TokenKind> parse_token(std::string_view token) noexcept {
    if (token.size() != kTokenLength) return std::nullopt;
    const std::string_view prefix = token.substr(0, kTokenPrefixLength);
    std::optional<TokenKind> kind;
    if (prefix == kAccessTokenPrefix) {
        kind = TokenKind::kAccess;
    } else if (prefix == kRefreshTokenPrefix) {
        kind = TokenKind::kRefresh;
    } else {
        return std::nullopt;
    }
    const std::string_view body = token.substr(kTokenPrefixLength, kTokenBodyLength);
    const std::size_t separator_at = kTokenPrefixLength + kTokenBodyLength;
    const std::string_view crc = token.substr(separator_at + 1);
    if (!all_in_alphabet(body) || token[separator_at] != '_' || !all_in_alphabet(crc)) {
        return std::nullopt;
    }
    const auto expected = checksum(token.substr(0, separator_at));
    if (crc != std::string_view(expected.data(), expected.size())) return std::nullopt;
    return kind;
}

}  // namespace myelin::auth
