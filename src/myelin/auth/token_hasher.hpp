#pragma once

// The keyed hash under which tokens are stored and cached: BLAKE2b-256 keyed with a subkey of
// the server secret. Raw tokens are never stored; a database dump without the key file does
// not let anyone check a guessed token. Used by the authenticator and the session service.
//
// Thread-safety: immutable after construction; hash() is safe to call concurrently.

#include <array>
#include <cstdint>
#include <string_view>

#include <sodium/crypto_generichash.h>

#include "myelin/auth/server_secret.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::auth {

class TokenHasher {
public:
    // Derives the hashing key (subkey 1, context "tokenhsh") from `secret`; keeps no reference
    // to it.
    explicit TokenHasher(const ServerSecret& secret);
    TokenHasher(const TokenHasher& other) = default;
    TokenHasher& operator=(const TokenHasher& other) = default;
    // Wipes the derived key and the keyed state.
    ~TokenHasher();

    // The keyed BLAKE2b-256 of `token`'s bytes. Deterministic for a given secret. Never fails;
    // does not block (~0.5 µs). Callers run parse_token() first so junk is never hashed.
    [[nodiscard]] storage::TokenHash hash(std::string_view token) const noexcept;

private:
    std::array<std::uint8_t, 32> key_{};
    // BLAKE2b initialised with key_ (the key block buffered): hash() copies it instead of
    // keying a fresh state for every token. Holds the key: wiped with it.
    crypto_generichash_state keyed_{};
};

}  // namespace myelin::auth
