#include "myelin/auth/token_hasher.hpp"

#include <algorithm>
#include <array>
#include <string>

#include <gtest/gtest.h>
#include <sodium.h>

#include "myelin/auth/token_format.hpp"

namespace myelin::auth {
namespace {

ServerSecret fixed_secret(std::uint8_t fill) {
    std::array<std::uint8_t, 32> key{};
    key.fill(fill);
    return ServerSecret(key);
}

TEST(TokenHasher, Deterministic) {
    const auto secret = fixed_secret(1);
    const TokenHasher a(secret);
    const TokenHasher b(secret);
    const std::string token = generate_token(TokenKind::kAccess);
    EXPECT_EQ(a.hash(token), a.hash(token));
    EXPECT_EQ(a.hash(token), b.hash(token));
}

// The hasher keeps a keyed state and copies it per token: the result must stay exactly the
// one-call keyed BLAKE2b-256 (hashes already stored were made that way), for every length, also
// past one and two 128-byte blocks, and from a copied hasher.
TEST(TokenHasher, IsOneCallKeyedBlake2b) {
    const auto secret = fixed_secret(7);
    const auto key = secret.derive(1, "tokenhsh");
    const TokenHasher hasher(secret);
    const TokenHasher copied = hasher;
    std::string input;
    for (std::size_t length = 0; length <= 300; ++length) {
        storage::TokenHash expected{};
        crypto_generichash(expected.data(), expected.size(),
                           reinterpret_cast<const unsigned char*>(input.data()), input.size(),
                           key.data(), key.size());
        EXPECT_EQ(hasher.hash(input), expected) << length;
        EXPECT_EQ(copied.hash(input), expected) << length;
        input.push_back(static_cast<char>('a' + length % 26));
    }
    const std::string token = generate_token(TokenKind::kAccess);
    storage::TokenHash expected{};
    crypto_generichash(expected.data(), expected.size(),
                       reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                       key.data(), key.size());
    EXPECT_EQ(hasher.hash(token), expected);
}

TEST(TokenHasher, DiffersForDifferentTokens) {
    const TokenHasher hasher(fixed_secret(1));
    const std::string token = generate_token(TokenKind::kAccess);
    std::string other = token;
    other[10] = other[10] == 'a' ? 'b' : 'a';
    EXPECT_NE(hasher.hash(token), hasher.hash(other));
    EXPECT_NE(hasher.hash(token), hasher.hash(generate_token(TokenKind::kAccess)));
    EXPECT_NE(hasher.hash(""), hasher.hash(token));
}

TEST(TokenHasher, DiffersForDifferentSecrets) {
    const std::string token = generate_token(TokenKind::kRefresh);
    EXPECT_NE(TokenHasher(fixed_secret(1)).hash(token), TokenHasher(fixed_secret(2)).hash(token));
    EXPECT_NE(TokenHasher(ServerSecret::generate()).hash(token),
              TokenHasher(ServerSecret::generate()).hash(token));
}

TEST(TokenHasher, IsKeyedNotAPlainDigestOrTheSecret) {
    const auto secret = fixed_secret(3);
    const TokenHasher hasher(secret);
    const std::string token = generate_token(TokenKind::kAccess);
    const auto h = hasher.hash(token);
    // Not the subkey of any other purpose, and not an all-zero (unkeyed/failed) output.
    EXPECT_NE(h, secret.derive(1, "tokenhsh"));
    EXPECT_NE(h, storage::TokenHash{});
}

TEST(TokenHasher, OutputContainsNoPartOfTheToken) {
    const TokenHasher hasher(ServerSecret::generate());
    for (int i = 0; i < 100; ++i) {
        const std::string token = generate_token(TokenKind::kAccess);
        const auto h = hasher.hash(token);
        const std::string hash_bytes(h.begin(), h.end());
        // No 4-byte window of the token (body or checksum) appears in the hash, nor vice versa.
        for (std::size_t pos = 5; pos + 4 <= token.size(); ++pos) {
            EXPECT_EQ(hash_bytes.find(token.substr(pos, 4)), std::string::npos) << token;
        }
        for (std::size_t pos = 0; pos + 4 <= hash_bytes.size(); ++pos) {
            EXPECT_EQ(token.find(hash_bytes.substr(pos, 4)), std::string::npos) << token;
        }
    }
}

}  // namespace
}  // namespace myelin::auth
