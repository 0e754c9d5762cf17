#pragma once

// Shared set-up for the service tests: a per-test scratch directory (for the SQLite file) and a
// random server secret with the token hasher and successor sealer derived from it. Not
// thread-safe; each test fixture owns its own.

#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/sodium_init.hpp"
#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_hasher.hpp"

namespace myelin::test_support {

class ScratchDir {
public:
    // Creates an empty directory "<prefix>-<pid>-<current test name>" under the system temp
    // directory, first removing anything left there by an earlier run. Must be constructed while
    // a GoogleTest test is running (e.g. as a fixture member). Throws std::filesystem_error if
    // the directory cannot be made.
    explicit ScratchDir(const std::string& prefix)
        : path_(std::filesystem::temp_directory_path() /
                (prefix + "-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    // Removes the directory and everything in it; errors are ignored. Whatever keeps files open
    // in it (a database) must be closed first: declare this member before such members.
    ~ScratchDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    // One owner per directory.
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    // The directory's absolute path; it exists for this object's lifetime.
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

// A fresh random server secret and the token hasher and successor sealer derived from it, as a
// SessionService needs them. Services hold references to `hasher` and `sealer`, so this object
// must outlive them (declare it before them) and is neither copyable nor movable.
struct TokenKeys {
    // Initialises libsodium, draws a new secret and derives both keys. Throws std::runtime_error
    // if libsodium cannot initialise.
    TokenKeys() : secret(make_secret()), hasher(secret), sealer(secret) {}
    TokenKeys(const TokenKeys&) = delete;
    TokenKeys& operator=(const TokenKeys&) = delete;

    // Declared first so that it is built before (and destroyed after) the keys derived from it.
    auth::ServerSecret secret;
    auth::TokenHasher hasher;
    auth::SuccessorSealer sealer;

private:
    static auth::ServerSecret make_secret() {
        auth::ensure_sodium();
        return auth::ServerSecret::generate();
    }
};

}  // namespace myelin::test_support
