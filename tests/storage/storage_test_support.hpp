#pragma once

// Helpers shared by the storage tests: a temporary folder per test, record builders, and blocking
// ways to check and post writes.

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <latch>
#include <optional>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"
#include "myelin/storage/database.hpp"
#include "myelin/storage/records.hpp"

namespace myelin::storage::testing {

// A fresh folder under the system temp directory, removed with everything in it at the end.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "myelin-storage-XXXXXX");
        if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

inline UserRecord make_user(const std::string& user_id, std::int64_t created_ts = 1000) {
    UserRecord user;
    user.user_id = user_id;
    user.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
    user.created_ts = created_ts;
    return user;
}

inline DeviceRecord make_device(const std::string& user_id, const std::string& device_id) {
    DeviceRecord device;
    device.user_id = user_id;
    device.device_id = device_id;
    device.display_name = "Phone";
    device.created_ts = 2000;
    return device;
}

inline SessionRecord make_session(const std::string& user_id, const std::string& device_id) {
    SessionRecord session;
    session.user_id = user_id;
    session.device_id = device_id;
    session.refreshable = true;
    session.created_ts = 3000;
    session.ends_ts = 9'000'000;
    return session;
}

// A hash whose bytes are all `fill` (distinct fills give distinct hashes).
inline TokenHash make_hash(std::uint8_t fill) {
    TokenHash hash{};
    hash.fill(fill);
    hash[31] = static_cast<std::uint8_t>(fill ^ 0x5a);
    return hash;
}

// Whether the user exists (read in its own read job); a failed read fails the test.
inline bool user_exists(Database& db, const std::string& user_id) {
    auto found = read_sync<std::optional<UserRecord>>(
        db, [&](ReadTxn& txn) { return txn.find_user(user_id); });
    EXPECT_TRUE(found);
    return found && found->has_value();
}

// Posts a job that inserts `user_id` and returns `outcome` (or throws when `throw_it`); its
// result goes into `*result` and `done` is counted down.
inline void post_insert(Database& db, const std::string& user_id, std::optional<Error> outcome,
                        bool throw_it, Result<void>* result, std::latch& done) {
    WriteJob job;
    job.run = [user_id, outcome, throw_it](WriteTxn& txn) -> Result<void> {
        if (auto u = txn.insert_user(make_user(user_id)); !u) return u.error();
        if (auto d = txn.ensure_device(make_device(user_id, "D")); !d) return d.error();
        if (throw_it) throw std::runtime_error("job failure for the test");
        if (outcome) return *outcome;
        return {};
    };
    job.on_committed = [result, &done](const Result<void>& r) {
        *result = r;
        done.count_down();
    };
    db.post_write(std::move(job));
}

}  // namespace myelin::storage::testing
