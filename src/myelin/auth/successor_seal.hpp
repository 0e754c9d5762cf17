#pragma once

// Sealing of a refresh's answer (the successor token pair) so that it can be stored next to the
// old refresh token's row and handed out again if the client retries the refresh, yet be read
// only by someone holding the raw old refresh token. The key is a keyed BLAKE2b of the raw token
// under its own subkey, so neither the stored token hash nor a database dump yields it.
// Used by the session service for idempotent rotation (docs/tokens.md).
//
// Thread-safety: immutable after construction; seal() and unseal() are safe concurrently.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "myelin/auth/server_secret.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::auth {

// The answer of a login or refresh: the tokens and the access token's expiry.
struct TokenPair {
    std::string access_token;
    std::string refresh_token;
    std::int64_t access_expires_ts = 0;  // ms since the epoch; 0 = never

    bool operator==(const TokenPair&) const = default;
};

class SuccessorSealer {
public:
    // Derives the sealing key (subkey 2, context "succseal") from `secret`; keeps no reference.
    explicit SuccessorSealer(const ServerSecret& secret);
    SuccessorSealer(const SuccessorSealer& other) = default;
    SuccessorSealer& operator=(const SuccessorSealer& other) = default;
    // Wipes the derived key.
    ~SuccessorSealer();

    // Encrypts `pair` with XChaCha20-Poly1305 under a key derived from the raw
    // `old_refresh_token`, with `old_hash` (that token's stored hash) as associated data, so the
    // blob is bound to that row. Output: 24-byte random nonce || ciphertext || 16-byte tag; two
    // seals of the same pair differ. Never fails; does not block. The plaintext and the key are
    // wiped before returning.
    [[nodiscard]] std::vector<std::uint8_t> seal(std::string_view old_refresh_token,
                                                 const storage::TokenHash& old_hash,
                                                 const TokenPair& pair) const;

    // The pair sealed by seal() with the same token and hash, or nullopt if `sealed` is
    // truncated, tampered with, from another secret, or `old_refresh_token` / `old_hash` differ.
    // Does not block; wipes its key and plaintext buffers. The caller owns (and should wipe)
    // the returned tokens.
    [[nodiscard]] std::optional<TokenPair> unseal(std::string_view old_refresh_token,
                                                  const storage::TokenHash& old_hash,
                                                  std::span<const std::uint8_t> sealed) const;

private:
    // The per-token AEAD key; the caller wipes it.
    std::array<std::uint8_t, 32> token_key(std::string_view old_refresh_token) const noexcept;

    std::array<std::uint8_t, 32> key_{};
};

}  // namespace myelin::auth
