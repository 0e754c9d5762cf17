#include "myelin/auth/token_hasher.hpp"

#include <sodium.h>

#include "myelin/auth/sodium_init.hpp"

namespace myelin::auth {

TokenHasher::TokenHasher(const ServerSecret& secret) : key_(secret.derive(1, "tokenhsh")) {
    ensure_sodium();
}

TokenHasher::~TokenHasher() { sodium_memzero(key_.data(), key_.size()); }

storage::TokenHash TokenHasher::hash(std::string_view token) const noexcept {
    static_assert(crypto_generichash_BYTES_MIN <= 32 && 32 <= crypto_generichash_BYTES_MAX);
    static_assert(crypto_generichash_KEYBYTES_MIN <= 32 && 32 <= crypto_generichash_KEYBYTES_MAX);
    storage::TokenHash out{};
    // Cannot fail with these lengths.
    crypto_generichash(out.data(), out.size(), reinterpret_cast<const unsigned char*>(token.data()),
                       token.size(), key_.data(), key_.size());
    return out;
}

}  // namespace myelin::auth
