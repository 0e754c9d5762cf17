#include "myelin/auth/token_hasher.hpp"

#include <sodium.h>

#include "myelin/auth/sodium_init.hpp"

namespace myelin::auth {

TokenHasher::TokenHasher(const ServerSecret& secret) : key_(secret.derive(1, "tokenhsh")) {
    ensure_sodium();
    // Cannot fail with these lengths.
    crypto_generichash_init(&keyed_, key_.data(), key_.size(), 32);
}

TokenHasher::~TokenHasher() {
    sodium_memzero(key_.data(), key_.size());
    sodium_memzero(&keyed_, sizeof keyed_);
}

storage::TokenHash TokenHasher::hash(std::string_view token) const noexcept {
    static_assert(crypto_generichash_BYTES_MIN <= 32 && 32 <= crypto_generichash_BYTES_MAX);
    static_assert(crypto_generichash_KEYBYTES_MIN <= 32 && 32 <= crypto_generichash_KEYBYTES_MAX);
    storage::TokenHash out{};
    // The same value as crypto_generichash(out, token, key_) in one call: the keyed state is
    // prepared once (the constructor) and copied. Cannot fail with these lengths.
    crypto_generichash_state state = keyed_;
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(token.data()),
                              token.size());
    crypto_generichash_final(&state, out.data(), out.size());
    sodium_memzero(&state, sizeof state);  // the copy holds the key block too
    return out;
}

}  // namespace myelin::auth
