#pragma once

// The spec appendix "Cryptographic Test Vectors": the ed25519 seed every vector uses, with
// server name "domain" and key ID "ed25519:1".

#include "myelin/events/base64.hpp"
#include "myelin/events/signing_key.hpp"

namespace myelin::events::test {

inline SigningKey spec_signing_key() {
    const auto seed = decode_base64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1");
    return SigningKey(
        "1", std::span<const std::uint8_t, kEd25519SeedSize>(seed->data(), kEd25519SeedSize));
}

}  // namespace myelin::events::test
