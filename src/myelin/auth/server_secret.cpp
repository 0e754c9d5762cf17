#include "myelin/auth/server_secret.hpp"

#include <cstring>
#include <string>

#include <sodium.h>

#include "myelin/auth/sodium_init.hpp"
#include "myelin/core/secret_file.hpp"

namespace myelin::auth {

ServerSecret::ServerSecret(std::span<const std::uint8_t, kSize> key) noexcept {
    std::memcpy(key_.data(), key.data(), kSize);
}

ServerSecret ServerSecret::generate() {
    ensure_sodium();
    std::array<std::uint8_t, kSize> bytes{};
    randombytes_buf(bytes.data(), bytes.size());
    ServerSecret secret(bytes);
    sodium_memzero(bytes.data(), bytes.size());
    return secret;
}

ServerSecret::ServerSecret(ServerSecret&& other) noexcept : key_(other.key_) {
    sodium_memzero(other.key_.data(), other.key_.size());
}

ServerSecret& ServerSecret::operator=(ServerSecret&& other) noexcept {
    if (this != &other) {
        key_ = other.key_;
        sodium_memzero(other.key_.data(), other.key_.size());
    }
    return *this;
}

ServerSecret::~ServerSecret() { sodium_memzero(key_.data(), key_.size()); }

std::array<std::uint8_t, 32> ServerSecret::derive(std::uint64_t subkey_id,
                                                  const char (&context)[9]) const noexcept {
    static_assert(crypto_kdf_CONTEXTBYTES == 8);
    static_assert(crypto_kdf_KEYBYTES == kSize);
    std::array<std::uint8_t, 32> out{};
    // Cannot fail: the output length is within [crypto_kdf_BYTES_MIN, crypto_kdf_BYTES_MAX].
    crypto_kdf_derive_from_key(out.data(), out.size(), subkey_id, context, key_.data());
    return out;
}

Result<ServerSecret> load_or_create_server_secret(const std::filesystem::path& path) {
    ensure_sodium();
    auto make_contents = [] {
        std::string bytes(ServerSecret::kSize, '\0');
        randombytes_buf(bytes.data(), bytes.size());
        return bytes;
    };
    auto contents =
        load_or_create_secret_file(path, "Server secret file", ServerSecret::kSize, make_contents);
    if (!contents) return contents.error();
    if (contents->size() != ServerSecret::kSize) {
        const std::size_t size = contents->size();
        wipe_string(*contents);
        return errors::internal("Server secret file " + path.string() + ": must be exactly " +
                                std::to_string(ServerSecret::kSize) + " bytes but is " +
                                std::to_string(size) + " bytes");
    }
    ServerSecret secret(std::span<const std::uint8_t, ServerSecret::kSize>(
        reinterpret_cast<const std::uint8_t*>(contents->data()), ServerSecret::kSize));
    wipe_string(*contents);
    return secret;
}

}  // namespace myelin::auth
