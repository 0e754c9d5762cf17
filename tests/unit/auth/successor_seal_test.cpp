#include "myelin/auth/successor_seal.hpp"

#include <string>

#include <gtest/gtest.h>

#include "myelin/auth/token_format.hpp"
#include "myelin/auth/token_hasher.hpp"

namespace myelin::auth {
namespace {

class SuccessorSealTest : public ::testing::Test {
protected:
    SuccessorSealTest()
        : secret_(ServerSecret::generate()),
          hasher_(secret_),
          sealer_(secret_),
          old_token_(generate_token(TokenKind::kRefresh)),
          old_hash_(hasher_.hash(old_token_)) {
        pair_.access_token = generate_token(TokenKind::kAccess);
        pair_.refresh_token = generate_token(TokenKind::kRefresh);
        pair_.access_expires_ts = 1'700'000'123'456;
    }

    ServerSecret secret_;
    TokenHasher hasher_;
    SuccessorSealer sealer_;
    std::string old_token_;
    storage::TokenHash old_hash_;
    TokenPair pair_;
};

TEST_F(SuccessorSealTest, RoundTrip) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    const auto opened = sealer_.unseal(old_token_, old_hash_, sealed);
    ASSERT_TRUE(opened.has_value());
    EXPECT_EQ(*opened, pair_);
}

TEST_F(SuccessorSealTest, RoundTripEdgeValues) {
    for (const std::int64_t ts : {std::int64_t{0}, std::int64_t{-1}, INT64_MAX, INT64_MIN}) {
        TokenPair pair{"", "", ts};
        const auto opened =
            sealer_.unseal(old_token_, old_hash_, sealer_.seal(old_token_, old_hash_, pair));
        ASSERT_TRUE(opened.has_value());
        EXPECT_EQ(*opened, pair);
    }
}

TEST_F(SuccessorSealTest, SealedBytesDoNotContainTheTokens) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    const std::string blob(sealed.begin(), sealed.end());
    EXPECT_EQ(blob.find(pair_.access_token.substr(5, 20)), std::string::npos);
    EXPECT_EQ(blob.find(pair_.refresh_token.substr(5, 20)), std::string::npos);
}

TEST_F(SuccessorSealTest, WrongOldTokenFails) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    EXPECT_FALSE(sealer_.unseal(generate_token(TokenKind::kRefresh), old_hash_, sealed));
    std::string near = old_token_;
    near[20] = near[20] == 'x' ? 'y' : 'x';
    EXPECT_FALSE(sealer_.unseal(near, old_hash_, sealed));
    EXPECT_FALSE(sealer_.unseal("", old_hash_, sealed));
}

TEST_F(SuccessorSealTest, WrongHashAsAssociatedDataFails) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    storage::TokenHash other = old_hash_;
    other[0] ^= 1;
    EXPECT_FALSE(sealer_.unseal(old_token_, other, sealed));
    EXPECT_FALSE(sealer_.unseal(old_token_, hasher_.hash(pair_.refresh_token), sealed));
}

TEST_F(SuccessorSealTest, TheStoredHashIsNotTheKey) {
    // Someone with a database dump has old_hash_ and the blob, but not the raw token: using the
    // hash (as raw bytes or hex) in place of the token must not open it.
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    const std::string as_bytes(old_hash_.begin(), old_hash_.end());
    EXPECT_FALSE(sealer_.unseal(as_bytes, old_hash_, sealed));
}

TEST_F(SuccessorSealTest, EveryFlippedByteFails) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    for (std::size_t i = 0; i < sealed.size(); ++i) {
        auto tampered = sealed;
        tampered[i] ^= 0x01;
        EXPECT_FALSE(sealer_.unseal(old_token_, old_hash_, tampered)) << "byte " << i;
    }
}

TEST_F(SuccessorSealTest, TruncatedOrExtendedFails) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    for (std::size_t n :
         {std::size_t{0}, std::size_t{10}, std::size_t{39}, std::size_t{40}, sealed.size() - 1}) {
        std::vector<std::uint8_t> cut(sealed.begin(), sealed.begin() + static_cast<long>(n));
        EXPECT_FALSE(sealer_.unseal(old_token_, old_hash_, cut)) << n;
    }
    auto longer = sealed;
    longer.push_back(0);
    EXPECT_FALSE(sealer_.unseal(old_token_, old_hash_, longer));
}

TEST_F(SuccessorSealTest, OtherSecretFails) {
    const auto sealed = sealer_.seal(old_token_, old_hash_, pair_);
    const ServerSecret other_secret = ServerSecret::generate();
    const SuccessorSealer other(other_secret);
    EXPECT_FALSE(other.unseal(old_token_, old_hash_, sealed));
}

TEST_F(SuccessorSealTest, TwoSealsOfTheSamePairDiffer) {
    const auto a = sealer_.seal(old_token_, old_hash_, pair_);
    const auto b = sealer_.seal(old_token_, old_hash_, pair_);
    EXPECT_NE(a, b);
    EXPECT_NE(std::vector<std::uint8_t>(a.begin(), a.begin() + 24),
              std::vector<std::uint8_t>(b.begin(), b.begin() + 24));  // distinct nonces
    EXPECT_EQ(sealer_.unseal(old_token_, old_hash_, a), pair_);
    EXPECT_EQ(sealer_.unseal(old_token_, old_hash_, b), pair_);
}

}  // namespace
}  // namespace myelin::auth
