// libFuzzer target: auth::parse_token (token_format.hpp) on arbitrary bytes. Beyond "no crash,
// no sanitizer finding", every token it accepts must have the documented shape: kTokenLength
// bytes, its kind's prefix, base62 body and checksum around one '_'.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "myelin/auth/token_format.hpp"

#include "fuzz_check.hpp"

namespace {

bool is_base62(char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace myelin::auth;
    using myelin::fuzz::require;
    const std::string_view token(reinterpret_cast<const char*>(data), size);
    const auto kind = parse_token(token);
    if (!kind) return 0;
    require(token.size() == kTokenLength, "accepted token has the wrong length");
    const std::string_view prefix =
        *kind == TokenKind::kAccess ? kAccessTokenPrefix : kRefreshTokenPrefix;
    require(token.substr(0, kTokenPrefixLength) == prefix, "accepted token has the wrong prefix");
    const std::size_t separator = kTokenPrefixLength + kTokenBodyLength;
    require(token[separator] == '_', "accepted token has no '_' before its checksum");
    for (std::size_t i = kTokenPrefixLength; i < token.size(); ++i) {
        require(i == separator || is_base62(token[i]), "accepted token has a non-base62 byte");
    }
    return 0;
}
