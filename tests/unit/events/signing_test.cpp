#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include "myelin/events/base64.hpp"
#include "myelin/events/json_signing.hpp"
#include "myelin/events/room_version.hpp"
#include "myelin/events/signing_key.hpp"

#include "spec_vectors.hpp"

namespace myelin::events {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

// Spec appendix "Cryptographic Test Vectors", "JSON Signing": the empty object.
TEST(JsonSigning, SpecVectorEmptyObject) {
    const SigningKey key = test::spec_signing_key();
    EXPECT_EQ(key.key_id(), "ed25519:1");
    json::object object;
    ASSERT_TRUE(sign_json(object, "domain", key));
    EXPECT_EQ(object, json::parse(R"({
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    })")
                          .get_object());
}

// The same section: an object with data values.
TEST(JsonSigning, SpecVectorObjectWithValues) {
    const SigningKey key = test::spec_signing_key();
    json::object object = json::parse(R"({"one": 1, "two": "Two"})").get_object();
    ASSERT_TRUE(sign_json(object, "domain", key));
    EXPECT_EQ(object, json::parse(R"({
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two"
    })")
                          .get_object());
}

TEST(JsonSigning, UnsignedAndOtherSignaturesAreNotCoveredAndKept) {
    const SigningKey key = test::spec_signing_key();
    json::object object = json::parse(R"({"one": 1, "two": "Two", "unsigned": {"age_ts": 5},
        "signatures": {"other.example": {"ed25519:x": "abc"}}})")
                              .get_object();
    ASSERT_TRUE(sign_json(object, "domain", key));
    // Same signature as without unsigned/other signatures.
    EXPECT_EQ(
        object.at("signatures").at("domain").at("ed25519:1").as_string(),
        "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw");
    EXPECT_EQ(object.at("signatures").at("other.example").at("ed25519:x").as_string(), "abc");
    EXPECT_EQ(object.at("unsigned").at("age_ts").as_int64(), 5);
}

TEST(JsonSigning, RefusesNonCanonicalAndMalformedSignatures) {
    const SigningKey key = test::spec_signing_key();
    json::object floaty = json::parse(R"({"a": 1.5})").get_object();
    EXPECT_FALSE(sign_json(floaty, "domain", key));
    EXPECT_FALSE(floaty.contains("signatures"));
    json::object bad_sigs = json::parse(R"({"signatures": []})").get_object();
    EXPECT_FALSE(sign_json(bad_sigs, "domain", key));
}

TEST(JsonSigning, VerifyAcceptsOwnSignatureAndRefusesTampering) {
    const SigningKey key = test::spec_signing_key();
    VerifyKeys keys;
    keys.add("domain", key.key_id(), key.public_key());
    json::object object = json::parse(R"({"one": 1, "two": "Two"})").get_object();
    ASSERT_TRUE(sign_json(object, "domain", key));
    EXPECT_TRUE(verify_json_signature(object, "domain", keys));

    // unsigned may change in transit.
    object["unsigned"] = json::object{{"age", 3}};
    EXPECT_TRUE(verify_json_signature(object, "domain", keys));

    json::object tampered = object;
    tampered["two"] = "Three";
    auto r = verify_json_signature(tampered, "domain", keys);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().errcode, "M_FORBIDDEN");

    // No entry for the server, no known key, unknown algorithms only.
    EXPECT_FALSE(verify_json_signature(object, "other.example", keys));
    VerifyKeys other;
    other.add("domain", "ed25519:2", key.public_key());
    EXPECT_FALSE(verify_json_signature(object, "domain", other));
    json::object curve =
        json::parse(R"({"signatures":{"domain":{"curve25519:1":"abc"}}})").get_object();
    EXPECT_FALSE(verify_json_signature(curve, "domain", keys));

    // A bad signature under a known key fails even if another known one verifies.
    json::object two = object;
    keys.add("domain", "ed25519:2", key.public_key());
    two["signatures"].as_object()["domain"].as_object()["ed25519:2"] = "AAAA";
    EXPECT_FALSE(verify_json_signature(two, "domain", keys));
    two["signatures"].as_object()["domain"].as_object()["ed25519:2"] = "!!";
    EXPECT_FALSE(verify_json_signature(two, "domain", keys));
}

TEST(JsonSigning, SignatureByRawKey) {
    const SigningKey key = test::spec_signing_key();
    const SigningKey stranger = SigningKey::generate("x");
    json::object object = json::parse(R"({"mxid": "@a:b", "token": "t"})").get_object();
    ASSERT_TRUE(sign_json(object, "identity.example", key));
    EXPECT_TRUE(has_signature_by_key(object, key.public_key()));
    EXPECT_FALSE(has_signature_by_key(object, stranger.public_key()));
    object["token"] = "u";
    EXPECT_FALSE(has_signature_by_key(object, key.public_key()));
}

TEST(SigningKey, PublicKeyFormAndKeyVersionGrammar) {
    const SigningKey key = test::spec_signing_key();
    // 32 bytes in unpadded Base64.
    EXPECT_EQ(key.public_key_base64().size(), 43U);
    EXPECT_TRUE(is_valid_key_version("a_AbC9"));
    EXPECT_FALSE(is_valid_key_version(""));
    EXPECT_FALSE(is_valid_key_version("a:b"));
    EXPECT_FALSE(is_valid_key_version("a b"));
    EXPECT_FALSE(is_valid_key_version(std::string(65, 'a')));
}

TEST(RoomVersions, OnlyTenAndEleven) {
    ASSERT_NE(find_room_version("10"), nullptr);
    ASSERT_NE(find_room_version("11"), nullptr);
    EXPECT_EQ(find_room_version("9"), nullptr);
    EXPECT_EQ(find_room_version("12"), nullptr);
    EXPECT_EQ(find_room_version(""), nullptr);
    EXPECT_EQ(supported_room_versions().size(), 2U);
    EXPECT_NE(find_room_version(kDefaultRoomVersion), nullptr);
    EXPECT_TRUE(find_room_version("10")->creator_in_content);
    EXPECT_FALSE(find_room_version("11")->creator_in_content);
}

class SigningKeyFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::random_device rd;
        dir_ =
            fs::temp_directory_path() /
            ("myelin_signing_key_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    static void write_file(const fs::path& p, const std::string& content, mode_t mode) {
        {
            std::ofstream out(p, std::ios::binary);
            out << content;
        }
        ASSERT_EQ(::chmod(p.c_str(), mode), 0);
    }
    static std::string read_file(const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    fs::path dir_;
};

TEST_F(SigningKeyFileTest, CreatedOnceWithMode0600AndReloadedIdentical) {
    const fs::path path = dir_ / "signing.key";
    auto first = load_or_create_signing_key(path);
    ASSERT_TRUE(first) << first.error().message;
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600U);
    const std::string text = read_file(path);
    EXPECT_TRUE(text.starts_with("ed25519 a_")) << text;
    EXPECT_TRUE(text.ends_with("\n"));
    EXPECT_EQ(first->key_id(), "ed25519:" + first->version());
    EXPECT_EQ(first->version().size(), 6U);

    auto second = load_or_create_signing_key(path);
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_EQ(first->key_id(), second->key_id());
    EXPECT_EQ(first->public_key(), second->public_key());
    EXPECT_EQ(read_file(path), text);
}

TEST_F(SigningKeyFileTest, LoadsTheSynapseFormatWithTheSpecSeed) {
    const fs::path path = dir_ / "signing.key";
    write_file(path, "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n", 0600);
    auto key = load_or_create_signing_key(path);
    ASSERT_TRUE(key) << key.error().message;
    EXPECT_EQ(key->key_id(), "ed25519:1");
    EXPECT_EQ(key->public_key(), test::spec_signing_key().public_key());
    // Without the final newline too.
    write_file(path, "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1", 0600);
    EXPECT_TRUE(load_or_create_signing_key(path));
}

TEST_F(SigningKeyFileTest, RefusesLooseModesAndBadContentWithoutShowingTheKey) {
    const fs::path path = dir_ / "signing.key";
    const std::string seed = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
    write_file(path, "ed25519 1 " + seed + "\n", 0640);
    auto loose = load_or_create_signing_key(path);
    ASSERT_FALSE(loose);
    EXPECT_NE(loose.error().message.find("chmod 600"), std::string::npos);
    EXPECT_EQ(loose.error().message.find(seed), std::string::npos);

    for (const std::string& bad : std::vector<std::string>{
             "", "ed25519 1\n", "curve25519 1 " + seed + "\n", "ed25519 a:b " + seed + "\n",
             "ed25519 1 " + seed + " extra\n", "ed25519 1 " + seed + "\nsecond line\n",
             "ed25519 1 Zm9v\n", "ed25519 1 !!!\n", "ed25519  1 " + seed + "\n"}) {
        write_file(path, bad, 0600);
        auto r = load_or_create_signing_key(path);
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().message.find(path.string()), std::string::npos);
        EXPECT_EQ(r.error().message.find(seed), std::string::npos);
    }
}

TEST_F(SigningKeyFileTest, MissingDirectoryIsNamed) {
    auto r = load_or_create_signing_key(dir_ / "nope" / "signing.key");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("does not exist"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace myelin::events
