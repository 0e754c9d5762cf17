// TlsContext::load against certificates and keys made here with OpenSSL's API (EC P-256,
// self-signed): what loads, what is refused and how the refusal reads.

#include "myelin/http/tls_context.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace myelin::http {
namespace {

namespace fs = std::filesystem;

struct Pem {
    std::string certificate;
    std::string key;
    std::string encrypted_key;  // the same key under a passphrase
};

std::string bio_string(BIO* bio) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(n));
}

// A fresh key and a self-signed certificate for CN=`name`, valid from `from_s` to `to_s`
// seconds from now.
Pem make_pem(const char* name, long from_s = -60, long to_s = 3600) {
    Pem out;
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, key);
    X509_NAME* subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(name), -1, -1, 0);
    X509_set_issuer_name(x, subject);
    X509_sign(x, key, EVP_sha256());
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    out.certificate = bio_string(bio);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    out.key = bio_string(bio);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    static char passphrase[] = "secret passphrase";
    PEM_write_bio_PrivateKey(bio, key, EVP_aes_256_cbc(), nullptr, 0, nullptr, passphrase);
    out.encrypted_key = bio_string(bio);
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(key);
    return out;
}

class TlsContextTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::random_device rd;
        dir_ = fs::temp_directory_path() /
               ("myelin_tls_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
        fs::create_directories(dir_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    fs::path write(const std::string& name, const std::string& content, mode_t mode = 0600) {
        const fs::path path = dir_ / name;
        {
            std::ofstream out(path, std::ios::binary | std::ios::trunc);
            out << content;
        }
        EXPECT_EQ(::chmod(path.c_str(), mode), 0);
        return path;
    }

    fs::path dir_;
};

TEST_F(TlsContextTest, LoadsAMatchingPairAndDescribesTheCertificate) {
    const Pem pem = make_pem("myelin.test");
    auto context =
        TlsContext::load(write("cert.pem", pem.certificate, 0644), write("key.pem", pem.key, 0600));
    ASSERT_TRUE(context) << context.error().message;
    EXPECT_NE((*context)->summary().find("CN=myelin.test"), std::string::npos)
        << (*context)->summary();
    EXPECT_NE((*context)->summary().find("sha256 "), std::string::npos);
    EXPECT_FALSE((*context)->expired());
}

TEST_F(TlsContextTest, AGroupReadableKeyLoads) {
    const Pem pem = make_pem("myelin.test");
    auto context =
        TlsContext::load(write("cert.pem", pem.certificate), write("key.pem", pem.key, 0640));
    EXPECT_TRUE(context) << context.error().message;
}

TEST_F(TlsContextTest, AKeyAccessibleByOthersIsRefused) {
    const Pem pem = make_pem("myelin.test");
    for (mode_t mode : {0644, 0604, 0602, 0601}) {
        auto context =
            TlsContext::load(write("cert.pem", pem.certificate), write("key.pem", pem.key, mode));
        ASSERT_FALSE(context) << mode;
        const std::string& message = context.error().message;
        EXPECT_EQ(message.find("config key 'listen.tls_private_key' names '"), 0U) << message;
        EXPECT_NE(message.find("accessible by others"), std::string::npos) << message;
    }
}

TEST_F(TlsContextTest, AKeyOfAnotherCertificateIsRefusedWithoutShowingIt) {
    const Pem pem = make_pem("myelin.test");
    const Pem other = make_pem("other.test");
    const fs::path cert = write("cert.pem", pem.certificate);
    auto context = TlsContext::load(cert, write("key.pem", other.key));
    ASSERT_FALSE(context);
    const std::string& message = context.error().message;
    EXPECT_EQ(message.find("config key 'listen.tls_private_key' names '"), 0U) << message;
    EXPECT_NE(message.find("does not belong to the certificate in '" + cert.string() + "'"),
              std::string::npos)
        << message;
    EXPECT_EQ(message.find("PRIVATE KEY"), std::string::npos) << message;
    EXPECT_EQ(message.find(other.key.substr(28, 40)), std::string::npos) << message;
}

TEST_F(TlsContextTest, MissingFilesNameTheirKey) {
    const Pem pem = make_pem("myelin.test");
    const fs::path key = write("key.pem", pem.key);
    auto no_cert = TlsContext::load(dir_ / "missing.pem", key);
    ASSERT_FALSE(no_cert);
    EXPECT_EQ(
        no_cert.error().message.find("config key 'listen.tls_certificate' names '" +
                                     (dir_ / "missing.pem").string() + "', which cannot be read"),
        0U)
        << no_cert.error().message;
    auto no_key = TlsContext::load(write("cert.pem", pem.certificate), dir_ / "missing.pem");
    ASSERT_FALSE(no_key);
    EXPECT_EQ(no_key.error().message.find("config key 'listen.tls_private_key'"), 0U)
        << no_key.error().message;
}

TEST_F(TlsContextTest, FilesWithoutPemAreRefused) {
    const Pem pem = make_pem("myelin.test");
    auto bad_cert =
        TlsContext::load(write("cert.pem", "not a certificate\n"), write("key.pem", pem.key));
    ASSERT_FALSE(bad_cert);
    EXPECT_NE(bad_cert.error().message.find("holds no PEM certificate"), std::string::npos)
        << bad_cert.error().message;
    // Swapped files: the key file holds a certificate.
    auto swapped =
        TlsContext::load(write("cert.pem", pem.certificate), write("key.pem", pem.certificate));
    ASSERT_FALSE(swapped);
    EXPECT_NE(swapped.error().message.find("holds no unencrypted PEM private key"),
              std::string::npos)
        << swapped.error().message;
}

TEST_F(TlsContextTest, AnEncryptedKeyIsRefusedWithoutAPrompt) {
    const Pem pem = make_pem("myelin.test");
    auto context =
        TlsContext::load(write("cert.pem", pem.certificate), write("key.pem", pem.encrypted_key));
    ASSERT_FALSE(context);
    EXPECT_NE(context.error().message.find("without a passphrase"), std::string::npos)
        << context.error().message;
}

TEST_F(TlsContextTest, AnExpiredCertificateLoadsAndIsFlagged) {
    const Pem pem = make_pem("myelin.test", -7200, -3600);
    auto context = TlsContext::load(write("cert.pem", pem.certificate), write("key.pem", pem.key));
    ASSERT_TRUE(context) << context.error().message;
    EXPECT_TRUE((*context)->expired());
}

}  // namespace
}  // namespace myelin::http
