#pragma once

// The server's ed25519 signing key (spec appendix "Signing JSON", server-server "Retrieving
// server keys"): signs events and, later, federation requests. Its key ID is
// "ed25519:<version>", the version being [A-Za-z0-9_]+.
//
// Key file: one line "ed25519 <version> <unpadded base64 of the 32-byte seed>\n", the format
// Synapse and other servers use for their signing.key, so a key can be carried between them.
// Created on first start (version "a_" + 4 random alphanumerics) under the conventions of
// core/secret_file.hpp (O_EXCL, mode 0600, fsync; refused when group/other can read it).
//
// Thread-safety: a SigningKey is immutable after construction; sign() may be called
// concurrently. load_or_create_signing_key() blocks on file I/O: start-up and CLI only.

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "myelin/core/error.hpp"

namespace myelin::events {

inline constexpr std::size_t kEd25519SeedSize = 32;
inline constexpr std::size_t kEd25519PublicKeySize = 32;
inline constexpr std::size_t kEd25519SignatureSize = 64;

using PublicKey = std::array<std::uint8_t, kEd25519PublicKeySize>;
using Signature = std::array<std::uint8_t, kEd25519SignatureSize>;

class SigningKey {
public:
    // The key pair derived from `seed` (crypto_sign_seed_keypair). `version` must be a valid
    // key version ([A-Za-z0-9_]+); it is not checked here (the loader and generate() do).
    SigningKey(std::string version, std::span<const std::uint8_t, kEd25519SeedSize> seed);
    // A fresh random key with the given version; for tests and the first start.
    [[nodiscard]] static SigningKey generate(std::string version);

    SigningKey(const SigningKey&) = delete;
    SigningKey& operator=(const SigningKey&) = delete;
    SigningKey(SigningKey&& other) noexcept;
    SigningKey& operator=(SigningKey&& other) noexcept;
    // Wipes the secret key (sodium_memzero).
    ~SigningKey();

    // "ed25519:<version>".
    [[nodiscard]] const std::string& key_id() const noexcept { return key_id_; }
    [[nodiscard]] const std::string& version() const noexcept { return version_; }
    [[nodiscard]] const PublicKey& public_key() const noexcept { return public_key_; }
    // Unpadded standard Base64 of the public key, as published in /_matrix/key/v2/server.
    [[nodiscard]] std::string public_key_base64() const;
    // The detached ed25519 signature of `message`. Never fails.
    [[nodiscard]] Signature sign(std::string_view message) const noexcept;

private:
    std::string version_;
    std::string key_id_;
    PublicKey public_key_{};
    std::array<std::uint8_t, 64> secret_key_{};  // libsodium's seed || public key
};

// True when `signature` is a valid ed25519 signature of `message` by `public_key`.
[[nodiscard]] bool verify_ed25519(const PublicKey& public_key, std::string_view message,
                                  std::span<const std::uint8_t> signature) noexcept;

// True when `version` is a key version ([A-Za-z0-9_]+, at most 64 characters).
[[nodiscard]] bool is_valid_key_version(std::string_view version) noexcept;

// Loads the signing key from `path`, or creates it (see the file format above). Errors
// (500 M_UNKNOWN, naming the file and the problem, never the key): those of
// load_or_create_secret_file, and a file that is not one line of the format above.
[[nodiscard]] Result<SigningKey> load_or_create_signing_key(const std::filesystem::path& path);

}  // namespace myelin::events
