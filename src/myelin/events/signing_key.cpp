#include "myelin/events/signing_key.hpp"

#include <cstring>

#include <sodium.h>

#include "myelin/core/secret_file.hpp"
#include "myelin/core/sodium_init.hpp"
#include "myelin/events/base64.hpp"

namespace myelin::events {

static_assert(crypto_sign_SEEDBYTES == kEd25519SeedSize);
static_assert(crypto_sign_PUBLICKEYBYTES == kEd25519PublicKeySize);
static_assert(crypto_sign_BYTES == kEd25519SignatureSize);
static_assert(crypto_sign_SECRETKEYBYTES == 64);

SigningKey::SigningKey(std::string version, std::span<const std::uint8_t, kEd25519SeedSize> seed)
    : version_(std::move(version)), key_id_("ed25519:" + version_) {
    ensure_sodium();
    crypto_sign_seed_keypair(public_key_.data(), secret_key_.data(), seed.data());
}

SigningKey SigningKey::generate(std::string version) {
    ensure_sodium();
    std::array<std::uint8_t, kEd25519SeedSize> seed{};
    randombytes_buf(seed.data(), seed.size());
    SigningKey key(std::move(version), seed);
    sodium_memzero(seed.data(), seed.size());
    return key;
}

SigningKey::SigningKey(SigningKey&& other) noexcept
    : version_(std::move(other.version_)),
      key_id_(std::move(other.key_id_)),
      public_key_(other.public_key_),
      secret_key_(other.secret_key_) {
    sodium_memzero(other.secret_key_.data(), other.secret_key_.size());
}

SigningKey& SigningKey::operator=(SigningKey&& other) noexcept {
    if (this != &other) {
        version_ = std::move(other.version_);
        key_id_ = std::move(other.key_id_);
        public_key_ = other.public_key_;
        secret_key_ = other.secret_key_;
        sodium_memzero(other.secret_key_.data(), other.secret_key_.size());
    }
    return *this;
}

SigningKey::~SigningKey() { sodium_memzero(secret_key_.data(), secret_key_.size()); }

std::string SigningKey::public_key_base64() const { return encode_base64(public_key_); }

Signature SigningKey::sign(std::string_view message) const noexcept {
    Signature sig{};
    crypto_sign_detached(sig.data(), nullptr,
                         reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                         secret_key_.data());
    return sig;
}

bool verify_ed25519(const PublicKey& public_key, std::string_view message,
                    std::span<const std::uint8_t> signature) noexcept {
    if (signature.size() != kEd25519SignatureSize) return false;
    ensure_sodium();
    return crypto_sign_verify_detached(signature.data(),
                                       reinterpret_cast<const unsigned char*>(message.data()),
                                       message.size(), public_key.data()) == 0;
}

bool is_valid_key_version(std::string_view version) noexcept {
    if (version.empty() || version.size() > 64) return false;
    for (const char c : version) {
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok) return false;
    }
    return true;
}

namespace {

constexpr std::size_t kMaxKeyFileSize = 1024;

std::string new_key_file_contents() {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::string version = "a_";
    for (int i = 0; i < 4; ++i) version += kAlphabet[randombytes_uniform(sizeof kAlphabet - 1)];
    std::array<std::uint8_t, kEd25519SeedSize> seed{};
    randombytes_buf(seed.data(), seed.size());
    std::string seed_b64 = encode_base64(seed);
    sodium_memzero(seed.data(), seed.size());
    std::string contents = "ed25519 " + version + " " + seed_b64 + "\n";
    wipe_string(seed_b64);
    return contents;
}

Error format_error(const std::filesystem::path& path) {
    return errors::internal("Signing key file " + path.string() +
                            ": must be one line \"ed25519 <version> <base64 seed>\" with a "
                            "version of letters, digits and '_' and a 32-byte seed");
}

}  // namespace

Result<SigningKey> load_or_create_signing_key(const std::filesystem::path& path) {
    ensure_sodium();
    auto contents = load_or_create_secret_file(path, "Signing key file", kMaxKeyFileSize,
                                               new_key_file_contents);
    if (!contents) return contents.error();
    std::string_view text = *contents;
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    // Exactly three fields separated by single spaces, nothing after.
    const auto first_space = text.find(' ');
    const auto second_space =
        first_space == std::string_view::npos ? first_space : text.find(' ', first_space + 1);
    if (second_space == std::string_view::npos ||
        text.find_first_of(" \n", second_space + 1) != std::string_view::npos) {
        wipe_string(*contents);
        return format_error(path);
    }
    const bool algorithm_ok = text.substr(0, first_space) == "ed25519";
    const std::string version(text.substr(first_space + 1, second_space - first_space - 1));
    auto seed = decode_base64(text.substr(second_space + 1));
    wipe_string(*contents);
    if (!algorithm_ok || !is_valid_key_version(version) || !seed ||
        seed->size() != kEd25519SeedSize) {
        if (seed) sodium_memzero(seed->data(), seed->size());
        return format_error(path);
    }
    SigningKey key(version,
                   std::span<const std::uint8_t, kEd25519SeedSize>(seed->data(), kEd25519SeedSize));
    sodium_memzero(seed->data(), seed->size());
    return key;
}

}  // namespace myelin::events
