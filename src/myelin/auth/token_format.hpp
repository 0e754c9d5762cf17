#pragma once

// The self-verifying token format shared by access and refresh tokens:
//   <prefix><43 base62 random chars>_<6 base62 chars of CRC-32 over prefix+body>
// The prefix names the kind and the checksum lets parse_token() reject typos, truncations and
// tokens of another kind before any cache or storage lookup. See docs/tokens.md.
//
// Thread-safety: free functions with no shared state; safe from any thread.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace myelin::auth {

enum class TokenKind { kAccess, kRefresh };

inline constexpr std::string_view kAccessTokenPrefix = "myat_";
inline constexpr std::string_view kRefreshTokenPrefix = "myrt_";
inline constexpr std::size_t kTokenPrefixLength = 5;
inline constexpr std::size_t kTokenBodyLength = 43;  // 43 * log2(62) = 256.03 bits of entropy
inline constexpr std::size_t kTokenChecksumLength = 6;
inline constexpr std::size_t kTokenLength =
    kTokenPrefixLength + kTokenBodyLength + 1 + kTokenChecksumLength;  // 55

// Matches every token this module generates, and (allowing for chance) nothing else; for secret
// scanners and log redaction. ECMAScript / PCRE / RE2 compatible.
inline constexpr std::string_view kTokenRegex = R"(\bmy(at|rt)_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b)";

// A fresh token of `kind`: the prefix, 43 characters drawn uniformly from [0-9A-Za-z] with
// libsodium's CSPRNG, '_', and the base62 CRC-32 of prefix+body. Always kTokenLength long.
// Never fails (libsodium's randomness cannot fail once initialised); allocates the string.
[[nodiscard]] std::string generate_token(TokenKind kind);

// The kind of `token` if it is well formed: exact length, known prefix, body and checksum in
// [0-9A-Za-z], '_' separator, and a checksum matching prefix+body. nullopt otherwise. Does not
// allocate and does not look anything up: a valid result says only that the token *could* be
// ours, so callers run it first and touch the token cache or storage only on success. Not
// constant-time; the checksum is not secret.
[[nodiscard]] std::optional<TokenKind> parse_token(std::string_view token) noexcept;

}  // namespace myelin::auth
