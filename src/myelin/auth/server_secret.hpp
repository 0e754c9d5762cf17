#pragma once

// The server's 32-byte master secret, loaded from (or created in) a key file at start-up. Every
// keyed construction in auth/ (token hashing, successor sealing) uses its own subkey derived
// from it, so no two purposes ever share a key. The bytes never appear in an error or log.
//
// Thread-safety: a ServerSecret is immutable after construction; derive() is safe to call
// concurrently. load_or_create_server_secret() does blocking file I/O: start-up and CLI only.

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>

#include "myelin/core/error.hpp"

namespace myelin::auth {

class ServerSecret {
public:
    static constexpr std::size_t kSize = 32;

    // Takes a copy of `key`; the caller wipes its own copy. For the key-file loader, tests and
    // benchmarks.
    explicit ServerSecret(std::span<const std::uint8_t, kSize> key) noexcept;
    // A secret of fresh random bytes (libsodium CSPRNG); for tests and benchmarks.
    [[nodiscard]] static ServerSecret generate();

    // Single owner: copies would spread the key through memory. Moving wipes the source.
    ServerSecret(const ServerSecret&) = delete;
    ServerSecret& operator=(const ServerSecret&) = delete;
    ServerSecret(ServerSecret&& other) noexcept;
    ServerSecret& operator=(ServerSecret&& other) noexcept;
    // Wipes the key bytes (sodium_memzero).
    ~ServerSecret();

    // The 32-byte subkey number `subkey_id` for the 8-character purpose label `context`
    // (crypto_kdf_derive_from_key, i.e. keyed BLAKE2b). Deterministic; distinct (id, context)
    // pairs give independent keys. The caller owns the result and should wipe it after use.
    // Never fails; does not block.
    [[nodiscard]] std::array<std::uint8_t, 32> derive(std::uint64_t subkey_id,
                                                      const char (&context)[9]) const noexcept;

private:
    std::array<std::uint8_t, kSize> key_{};
};

// Loads the secret from `path`, or creates it there when the file does not exist.
// Creation: the parent directory must already exist; the file is created with
// O_CREAT|O_EXCL and mode 0600, filled with 32 random bytes and fsync'ed (with its directory).
// Loading: the file must be a regular file of exactly 32 bytes that neither group nor others
// can access. Errors (500 M_UNKNOWN, message naming the file and the problem and, for loose
// permissions, telling the operator to `chmod 600` it): missing parent directory, permission
// or I/O failure, wrong size, not a regular file, group/other access. Blocks on file I/O.
[[nodiscard]] Result<ServerSecret> load_or_create_server_secret(const std::filesystem::path& path);

}  // namespace myelin::auth
