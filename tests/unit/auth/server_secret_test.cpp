#include "myelin/auth/server_secret.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace myelin::auth {
namespace {

namespace fs = std::filesystem;

class ServerSecretTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::random_device rd;
        dir_ = fs::temp_directory_path() /
               ("myelin_secret_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
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

    static mode_t mode_of(const fs::path& p) {
        struct stat st {};
        EXPECT_EQ(::stat(p.c_str(), &st), 0);
        return st.st_mode & 07777;
    }

    fs::path dir_;
};

TEST_F(ServerSecretTest, CreatedWithMode0600AndReloadedIdentical) {
    const fs::path path = dir_ / "server.key";
    auto first = load_or_create_server_secret(path);
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_EQ(mode_of(path), 0600U);
    EXPECT_EQ(fs::file_size(path), 32U);

    auto second = load_or_create_server_secret(path);
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_EQ(first->derive(1, "testtest"), second->derive(1, "testtest"));
    EXPECT_EQ(first->derive(7, "abcdefgh"), second->derive(7, "abcdefgh"));
}

TEST_F(ServerSecretTest, DifferentFilesGiveDifferentSecrets) {
    auto a = load_or_create_server_secret(dir_ / "a.key");
    auto b = load_or_create_server_secret(dir_ / "b.key");
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->derive(1, "testtest"), b->derive(1, "testtest"));
}

TEST_F(ServerSecretTest, WrongSizeIsRejected) {
    for (const std::size_t size : {0, 16, 31, 33, 64}) {
        const fs::path path = dir_ / ("size" + std::to_string(size) + ".key");
        write_file(path, std::string(size, 'k'), 0600);
        auto r = load_or_create_server_secret(path);
        ASSERT_FALSE(r) << size;
        EXPECT_EQ(r.error().status, 500);
        EXPECT_EQ(r.error().errcode, "M_UNKNOWN");
        EXPECT_NE(r.error().message.find(path.string()), std::string::npos) << r.error().message;
        EXPECT_NE(r.error().message.find("32 bytes"), std::string::npos) << r.error().message;
        // Refusing must not replace the operator's file.
        EXPECT_EQ(fs::file_size(path), size);
    }
}

TEST_F(ServerSecretTest, GroupOrWorldReadableIsRejected) {
    const std::string key(32, 'k');
    for (const mode_t mode : {0644, 0640, 0604, 0660, 0610}) {
        const fs::path path = dir_ / "loose.key";
        write_file(path, key, mode);
        auto r = load_or_create_server_secret(path);
        ASSERT_FALSE(r) << std::oct << mode;
        EXPECT_EQ(r.error().status, 500);
        EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos) << r.error().message;
        EXPECT_NE(r.error().message.find(path.string()), std::string::npos) << r.error().message;
        EXPECT_EQ(r.error().message.find(key), std::string::npos);  // never the key bytes
    }
    const fs::path path = dir_ / "loose.key";
    ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
    EXPECT_TRUE(load_or_create_server_secret(path));
    ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
    EXPECT_TRUE(load_or_create_server_secret(path));
}

TEST_F(ServerSecretTest, MissingParentDirectoryIsRejected) {
    const fs::path path = dir_ / "no_such_dir" / "server.key";
    auto r = load_or_create_server_secret(path);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 500);
    EXPECT_NE(r.error().message.find("does not exist"), std::string::npos) << r.error().message;
    EXPECT_FALSE(fs::exists(dir_ / "no_such_dir"));  // not created behind the operator's back
}

TEST_F(ServerSecretTest, DirectoryInPlaceOfFileIsRejected) {
    const fs::path path = dir_ / "a_dir";
    fs::create_directory(path);
    ::chmod(path.c_str(), 0700);
    auto r = load_or_create_server_secret(path);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("regular file"), std::string::npos) << r.error().message;
}

TEST(ServerSecret, DeriveSeparatesIdsAndContexts) {
    const ServerSecret secret = ServerSecret::generate();
    EXPECT_EQ(secret.derive(1, "tokenhsh"), secret.derive(1, "tokenhsh"));
    EXPECT_NE(secret.derive(1, "tokenhsh"), secret.derive(2, "tokenhsh"));
    EXPECT_NE(secret.derive(1, "tokenhsh"), secret.derive(1, "succseal"));
}

TEST(ServerSecret, MoveKeepsKey) {
    ServerSecret a = ServerSecret::generate();
    const auto before = a.derive(1, "testtest");
    ServerSecret b(std::move(a));
    EXPECT_EQ(b.derive(1, "testtest"), before);
}

}  // namespace
}  // namespace myelin::auth
