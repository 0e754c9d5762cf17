#include "myelin/auth/token_format.hpp"

#include <array>
#include <regex>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace myelin::auth {
namespace {

constexpr std::string_view kAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

TEST(TokenFormat, RoundTripAccess) {
    const std::string token = generate_token(TokenKind::kAccess);
    EXPECT_EQ(token.size(), 55U);
    EXPECT_EQ(token.size(), kTokenLength);
    EXPECT_EQ(token.substr(0, 5), "myat_");
    EXPECT_EQ(token[48], '_');
    EXPECT_EQ(parse_token(token), TokenKind::kAccess);
}

TEST(TokenFormat, RoundTripRefresh) {
    const std::string token = generate_token(TokenKind::kRefresh);
    EXPECT_EQ(token.size(), 55U);
    EXPECT_EQ(token.substr(0, 5), "myrt_");
    EXPECT_EQ(parse_token(token), TokenKind::kRefresh);
}

TEST(TokenFormat, ThousandTokensDistinctAndValid) {
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        const auto kind = i % 2 == 0 ? TokenKind::kAccess : TokenKind::kRefresh;
        std::string token = generate_token(kind);
        ASSERT_EQ(token.size(), 55U);
        ASSERT_EQ(parse_token(token), kind) << token;
        seen.insert(std::move(token));
    }
    EXPECT_EQ(seen.size(), 1000U);
}

TEST(TokenFormat, BodyUsesWholeAlphabet) {
    // 43 * 400 = 17200 draws: every one of the 62 characters shows up unless the draw is broken
    // (each is missed with probability (61/62)^17200 < 1e-120).
    std::set<char> chars;
    for (int i = 0; i < 400; ++i) {
        const std::string token = generate_token(TokenKind::kAccess);
        chars.insert(token.begin() + 5, token.begin() + 48);
    }
    EXPECT_EQ(chars.size(), 62U);
}

TEST(TokenFormat, BodyCharactersAreUniform) {
    // 4000 tokens = 172000 draws, ~2774 per character with a standard deviation of ~52. A
    // modulo bias (e.g. byte % 62 without rejection) puts the first 8 characters ~21% high;
    // a 15% band is 8 standard deviations wide, so a correct generator never fails here.
    std::array<int, 256> counts{};
    const int tokens = 4000;
    for (int i = 0; i < tokens; ++i) {
        const std::string token = generate_token(TokenKind::kRefresh);
        for (std::size_t p = 5; p < 48; ++p) ++counts[static_cast<unsigned char>(token[p])];
    }
    const double expected = tokens * 43.0 / 62.0;
    for (char c : kAlphabet) {
        const int n = counts[static_cast<unsigned char>(c)];
        EXPECT_GT(n, expected * 0.85) << c;
        EXPECT_LT(n, expected * 1.15) << c;
    }
}

TEST(TokenFormat, EverySingleCharacterChangeIsRejected) {
    for (const auto kind : {TokenKind::kAccess, TokenKind::kRefresh}) {
        const std::string token = generate_token(kind);
        for (std::size_t pos = 0; pos < token.size(); ++pos) {
            for (char c : kAlphabet) {
                if (c == token[pos]) continue;
                std::string changed = token;
                changed[pos] = c;
                EXPECT_EQ(parse_token(changed), std::nullopt) << "pos " << pos << " -> " << c;
            }
            std::string changed = token;
            changed[pos] = changed[pos] == '_' ? '-' : '_';
            EXPECT_EQ(parse_token(changed), std::nullopt) << "pos " << pos << " -> _/-";
        }
    }
}

TEST(TokenFormat, PrefixSwapIsRejectedBecauseChecksumCoversPrefix) {
    for (int i = 0; i < 100; ++i) {
        std::string access = generate_token(TokenKind::kAccess);
        std::string refresh = generate_token(TokenKind::kRefresh);
        access.replace(0, 5, "myrt_");
        refresh.replace(0, 5, "myat_");
        EXPECT_EQ(parse_token(access), std::nullopt) << access;
        EXPECT_EQ(parse_token(refresh), std::nullopt) << refresh;
    }
}

TEST(TokenFormat, MalformedInputsAreRejected) {
    const std::string token = generate_token(TokenKind::kAccess);
    EXPECT_EQ(parse_token(""), std::nullopt);
    EXPECT_EQ(parse_token(token.substr(0, 54)), std::nullopt);  // truncated
    EXPECT_EQ(parse_token(token + "0"), std::nullopt);          // extended
    EXPECT_EQ(parse_token(" " + token.substr(1)), std::nullopt);

    std::string no_separator = token;
    no_separator.erase(48, 1);
    EXPECT_EQ(parse_token(no_separator), std::nullopt);
    EXPECT_EQ(parse_token(no_separator + "0"), std::nullopt);  // right length, no separator

    for (const char bad : {'-', '+', '/', '=', '.', ' ', '\0', '\xc3'}) {
        std::string changed = token;
        changed[20] = bad;
        EXPECT_EQ(parse_token(changed), std::nullopt) << int(bad);
        changed = token;
        changed[52] = bad;
        EXPECT_EQ(parse_token(changed), std::nullopt) << int(bad);
    }
    EXPECT_EQ(parse_token("syt_" + token.substr(4)), std::nullopt);
    EXPECT_EQ(parse_token("MYAT_" + token.substr(5)), std::nullopt);
}

TEST(TokenFormat, ChecksumMatchesIndependentImplementation) {
    // Computed with Python: zlib.crc32(prefix + body) in base62 (0-9A-Za-z), 6 digits, as
    // docs/tokens.md specifies for secret scanners.
    EXPECT_EQ(parse_token("myat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_3dEtvQ"),
              TokenKind::kAccess);
    EXPECT_EQ(parse_token("myrt_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg_25CO4t"),
              TokenKind::kRefresh);
    EXPECT_EQ(parse_token("myat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_3dEtvq"), std::nullopt);
    // Two more, with every byte position of the 8-byte steps differing.
    EXPECT_EQ(parse_token("myat_zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJ_1vQgZw"),
              TokenKind::kAccess);
    EXPECT_EQ(parse_token("myrt_9z8Y7x6W5v4U3t2S1r0QpOnMlKjIhGfEdCbA9a8B7c6_2n0rd4"),
              TokenKind::kRefresh);
}

TEST(TokenFormat, ChecksumIsSixBase62Characters) {
    const std::string token = generate_token(TokenKind::kRefresh);
    const std::string crc = token.substr(49);
    ASSERT_EQ(crc.size(), 6U);
    for (char c : crc) EXPECT_NE(kAlphabet.find(c), std::string_view::npos);
}

TEST(TokenFormat, RegexMatchesGeneratedTokens) {
    const std::regex re{std::string(kTokenRegex)};
    for (int i = 0; i < 50; ++i) {
        const std::string access = generate_token(TokenKind::kAccess);
        const std::string refresh = generate_token(TokenKind::kRefresh);
        EXPECT_TRUE(std::regex_match(access, re)) << access;
        EXPECT_TRUE(std::regex_match(refresh, re)) << refresh;
        // Found inside surrounding text, as a scanner would see it.
        std::smatch m;
        const std::string text = "Authorization: Bearer " + access + "\n";
        ASSERT_TRUE(std::regex_search(text, m, re));
        EXPECT_EQ(m.str(), access);
    }
    EXPECT_FALSE(std::regex_search(std::string("syt_abc_def"), re));
    const std::string token = generate_token(TokenKind::kAccess);
    EXPECT_FALSE(std::regex_search("x" + token, re));  // no word boundary before
    EXPECT_FALSE(std::regex_search(token + "x", re));  // no word boundary after
}

}  // namespace
}  // namespace myelin::auth
