#pragma once

// Unpadded Base64 as the Matrix spec uses it (appendix "Unpadded Base64"): the standard RFC 4648
// alphabet for keys, signatures and hashes, the URL-safe alphabet for event IDs. Pure functions,
// thread-safe.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace myelin::events {

// Standard alphabet ('+', '/'), no '=' padding.
[[nodiscard]] std::string encode_base64(std::span<const std::uint8_t> bytes);
// URL-safe alphabet ('-', '_'), no '=' padding.
[[nodiscard]] std::string encode_base64_url(std::span<const std::uint8_t> bytes);

// Decodes standard-alphabet Base64, with or without '=' padding (the spec asks decoders to
// accept both). nullopt for any other character or a length of 1 mod 4. Non-zero trailing bits
// are ignored, as other implementations do (the spec's signing test seed has them).
[[nodiscard]] std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text);
// The same for the URL-safe alphabet.
[[nodiscard]] std::optional<std::vector<std::uint8_t>> decode_base64_url(std::string_view text);
// Either alphabet (not mixed), padded or not: for keys published by other parties (identity
// servers' third-party invite keys come in both forms).
[[nodiscard]] std::optional<std::vector<std::uint8_t>> decode_base64_any(std::string_view text);

}  // namespace myelin::events
