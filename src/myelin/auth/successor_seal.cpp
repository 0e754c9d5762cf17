#include "myelin/auth/successor_seal.hpp"

#include <cstring>

#include <sodium.h>

#include "myelin/auth/sodium_init.hpp"

namespace myelin::auth {
namespace {

// Plaintext layout (little-endian):
//   u8 version (1) | u32 access length | access bytes | u32 refresh length | refresh bytes |
//   i64 access_expires_ts
constexpr std::uint8_t kFormatVersion = 1;
constexpr std::size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;  // 24
constexpr std::size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;       // 16
static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32);

// Wipes a byte buffer when it goes out of scope, on every path.
struct WipeOnExit {
    std::uint8_t* data;
    std::size_t size;
    ~WipeOnExit() { sodium_memzero(data, size); }
};

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void put_bytes(std::vector<std::uint8_t>& out, std::string_view s) {
    put_u32(out, static_cast<std::uint32_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
}

// A bounds-checked reader over the decrypted plaintext.
class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}

    bool u8(std::uint8_t& v) {
        if (in_.size() - pos_ < 1) return false;
        v = in_[pos_++];
        return true;
    }
    bool u32(std::uint32_t& v) {
        if (in_.size() - pos_ < 4) return false;
        v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t{in_[pos_++]} << (8 * i);
        return true;
    }
    bool u64(std::uint64_t& v) {
        if (in_.size() - pos_ < 8) return false;
        v = 0;
        for (int i = 0; i < 8; ++i) v |= std::uint64_t{in_[pos_++]} << (8 * i);
        return true;
    }
    bool bytes(std::string& s) {
        std::uint32_t n = 0;
        if (!u32(n) || in_.size() - pos_ < n) return false;
        s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
        pos_ += n;
        return true;
    }
    bool at_end() const { return pos_ == in_.size(); }

private:
    std::span<const std::uint8_t> in_;
    std::size_t pos_ = 0;
};

}  // namespace

SuccessorSealer::SuccessorSealer(const ServerSecret& secret) : key_(secret.derive(2, "succseal")) {
    ensure_sodium();
}

SuccessorSealer::~SuccessorSealer() { sodium_memzero(key_.data(), key_.size()); }

std::array<std::uint8_t, 32> SuccessorSealer::token_key(
    std::string_view old_refresh_token) const noexcept {
    std::array<std::uint8_t, 32> key{};
    crypto_generichash(key.data(), key.size(),
                       reinterpret_cast<const unsigned char*>(old_refresh_token.data()),
                       old_refresh_token.size(), key_.data(), key_.size());
    return key;
}

std::vector<std::uint8_t> SuccessorSealer::seal(std::string_view old_refresh_token,
                                                const storage::TokenHash& old_hash,
                                                const TokenPair& pair) const {
    std::vector<std::uint8_t> plain;
    // Reserved exactly, so the buffer never reallocates (and nothing below throws): wiping it
    // once covers every copy of the plaintext.
    plain.reserve(1 + 4 + pair.access_token.size() + 4 + pair.refresh_token.size() + 8);
    plain.push_back(kFormatVersion);
    put_bytes(plain, pair.access_token);
    put_bytes(plain, pair.refresh_token);
    put_u64(plain, static_cast<std::uint64_t>(pair.access_expires_ts));
    WipeOnExit wipe_plain{plain.data(), plain.size()};

    auto key = token_key(old_refresh_token);
    WipeOnExit wipe_key{key.data(), key.size()};

    std::vector<std::uint8_t> out(kNonceBytes + plain.size() + kTagBytes);
    randombytes_buf(out.data(), kNonceBytes);
    unsigned long long written = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + kNonceBytes, &written, plain.data(),
                                               plain.size(), old_hash.data(), old_hash.size(),
                                               nullptr, out.data(), key.data());
    out.resize(kNonceBytes + static_cast<std::size_t>(written));
    return out;
}

std::optional<TokenPair> SuccessorSealer::unseal(std::string_view old_refresh_token,
                                                 const storage::TokenHash& old_hash,
                                                 std::span<const std::uint8_t> sealed) const {
    if (sealed.size() < kNonceBytes + kTagBytes) return std::nullopt;
    auto key = token_key(old_refresh_token);
    WipeOnExit wipe_key{key.data(), key.size()};

    std::vector<std::uint8_t> plain(sealed.size() - kNonceBytes - kTagBytes);
    WipeOnExit wipe_plain{plain.data(), plain.size()};
    unsigned long long plain_len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain.data(), &plain_len, nullptr, sealed.data() + kNonceBytes,
            sealed.size() - kNonceBytes, old_hash.data(), old_hash.size(), sealed.data(),
            key.data()) != 0) {
        return std::nullopt;
    }

    Reader reader(std::span<const std::uint8_t>(plain.data(), static_cast<std::size_t>(plain_len)));
    std::uint8_t version = 0;
    std::uint64_t expires = 0;
    TokenPair pair;
    if (!reader.u8(version) || version != kFormatVersion || !reader.bytes(pair.access_token) ||
        !reader.bytes(pair.refresh_token) || !reader.u64(expires) || !reader.at_end()) {
        // Authentic but undecodable: only a bug or a future format can cause this.
        sodium_memzero(pair.access_token.data(), pair.access_token.size());
        sodium_memzero(pair.refresh_token.data(), pair.refresh_token.size());
        return std::nullopt;
    }
    pair.access_expires_ts = static_cast<std::int64_t>(expires);
    return pair;
}

}  // namespace myelin::auth
