// The storage methods of the account and operator side (issue #4) on every backend: user flags,
// device display names and activity, registration tokens with their counts, and the revocation
// log that revoke_session appends to and a server follows, also when another connection or
// another process writes the same database.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"

#include "storage_test_support.hpp"
#include "test_database.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_session;
using testing::make_user;

RegistrationTokenRecord make_token(const std::string& token,
                                   std::optional<std::int64_t> uses_allowed = std::nullopt,
                                   std::int64_t expiry_ts = 0) {
    RegistrationTokenRecord record;
    record.token = token;
    record.uses_allowed = uses_allowed;
    record.expiry_ts = expiry_ts;
    record.created_ts = 4000;
    return record;
}

// Runs `fn` in its own write job on `db` and returns its value, failing the test on an error.
template <typename T, typename Fn>
T write_on(Database& db, Fn fn) {
    Result<T> r = write_sync<T>(db, std::move(fn));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    if constexpr (!std::is_void_v<T>) return r ? std::move(*r) : T{};
}

template <typename T, typename Fn>
T read_on(Database& db, Fn fn) {
    Result<T> r = read_sync<T>(db, std::move(fn));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? std::move(*r) : T{};
}

// A user, a device and a session on it; returns the session id.
std::int64_t add_session(Database& db, const std::string& user_id, const std::string& device_id) {
    return write_on<std::int64_t>(db, [&](WriteTxn& txn) -> Result<std::int64_t> {
        if (auto u = txn.insert_user(make_user(user_id)); !u) return u.error();
        if (auto d = txn.ensure_device(make_device(user_id, device_id)); !d) return d.error();
        return txn.insert_session(make_session(user_id, device_id));
    });
}

std::vector<RevocationRecord> revocations(Database& db, std::int64_t after_id, int limit = 100) {
    return read_on<std::vector<RevocationRecord>>(
        db, [=](ReadTxn& txn) { return txn.revocations_since(after_id, limit); });
}

std::int64_t latest_revocation(Database& db) {
    return read_on<std::int64_t>(db, [](ReadTxn& txn) { return txn.latest_revocation_id(); });
}

std::optional<RegistrationTokenRecord> find_token(Database& db, const std::string& token) {
    return read_on<std::optional<RegistrationTokenRecord>>(
        db, [&](ReadTxn& txn) { return txn.find_registration_token(token); });
}

class AccountsTest : public testing::BackendTest {
protected:
    template <typename T, typename Fn>
    T write(Fn fn) {
        return write_on<T>(*db_, std::move(fn));
    }
    template <typename T, typename Fn>
    T read(Fn fn) {
        return read_on<T>(*db_, std::move(fn));
    }

    std::optional<UserRecord> user(const std::string& user_id) {
        return read<std::optional<UserRecord>>(
            [&](ReadTxn& txn) { return txn.find_user(user_id); });
    }
    std::optional<DeviceRecord> device(const std::string& user_id, const std::string& device_id) {
        return read<std::optional<DeviceRecord>>(
            [&](ReadTxn& txn) { return txn.find_device(user_id, device_id); });
    }
};

TEST_P(AccountsTest, UserFlagsAreSetAndClearedOnThatUserOnly) {
    write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@a:x")); });
    write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@b:x")); });

    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_user_deactivated("@a:x", true); }));
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_user_admin("@a:x", true); }));
    auto a = user("@a:x");
    ASSERT_TRUE(a.has_value());
    EXPECT_TRUE(a->deactivated);
    EXPECT_TRUE(a->is_admin);
    EXPECT_EQ(a->password_hash, make_user("@a:x").password_hash);  // nothing else changed
    auto b = user("@b:x");
    ASSERT_TRUE(b.has_value());
    EXPECT_FALSE(b->deactivated);
    EXPECT_FALSE(b->is_admin);

    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_user_admin("@a:x", false); }));
    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.set_user_deactivated("@a:x", false); }));
    a = user("@a:x");
    EXPECT_FALSE(a->is_admin);
    EXPECT_FALSE(a->deactivated);

    // Unknown users: false, and no row appears.
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.set_user_deactivated("@z:x", true); }));
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.set_user_admin("@z:x", true); }));
    EXPECT_FALSE(user("@z:x").has_value());
}

TEST_P(AccountsTest, DeactivatedUserIdCannotBeRegisteredAgain) {
    write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@a:x")); });
    write<bool>([](WriteTxn& txn) { return txn.set_user_deactivated("@a:x", true); });
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@a:x", 5)); }));
    EXPECT_TRUE(user("@a:x")->deactivated);
}

TEST_P(AccountsTest, DeviceDisplayNameIsSetAndClearedOnThatDeviceOnly) {
    write<bool>([](WriteTxn& txn) { return txn.ensure_device(make_device("@a:x", "D1")); });
    write<bool>([](WriteTxn& txn) { return txn.ensure_device(make_device("@a:x", "D2")); });

    EXPECT_TRUE(write<bool>([](WriteTxn& txn) {
        return txn.set_device_display_name("@a:x", "D1", std::string_view("Laptop"));
    }));
    EXPECT_EQ(device("@a:x", "D1")->display_name, std::optional<std::string>("Laptop"));
    EXPECT_EQ(device("@a:x", "D2")->display_name, std::optional<std::string>("Phone"));

    EXPECT_TRUE(write<bool>(
        [](WriteTxn& txn) { return txn.set_device_display_name("@a:x", "D1", std::nullopt); }));
    EXPECT_FALSE(device("@a:x", "D1")->display_name.has_value());

    // Another user's device of the same id, and unknown devices: false, nothing created.
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) {
        return txn.set_device_display_name("@b:x", "D1", std::string_view("X"));
    }));
    EXPECT_FALSE(device("@b:x", "D1").has_value());
}

TEST_P(AccountsTest, DeviceActivityOnlyMovesForward) {
    write<bool>([](WriteTxn& txn) { return txn.ensure_device(make_device("@a:x", "D1")); });
    write<bool>([](WriteTxn& txn) { return txn.ensure_device(make_device("@a:x", "D2")); });

    write<void>(
        [](WriteTxn& txn) { return txn.record_device_activity("@a:x", "D1", 5000, "192.0.2.1"); });
    auto d = device("@a:x", "D1");
    EXPECT_EQ(d->last_seen_ts, 5000);
    EXPECT_EQ(d->last_seen_ip, "192.0.2.1");
    EXPECT_EQ(d->display_name, std::optional<std::string>("Phone"));  // untouched
    EXPECT_EQ(device("@a:x", "D2")->last_seen_ts, 0);

    // An older or equal timestamp (a late batch) changes nothing.
    write<void>([](WriteTxn& txn) {
        return txn.record_device_activity("@a:x", "D1", 4000, "198.51.100.7");
    });
    write<void>([](WriteTxn& txn) {
        return txn.record_device_activity("@a:x", "D1", 5000, "198.51.100.8");
    });
    d = device("@a:x", "D1");
    EXPECT_EQ(d->last_seen_ts, 5000);
    EXPECT_EQ(d->last_seen_ip, "192.0.2.1");

    write<void>([](WriteTxn& txn) {
        return txn.record_device_activity("@a:x", "D1", 6000, "2001:db8::1");
    });
    d = device("@a:x", "D1");
    EXPECT_EQ(d->last_seen_ts, 6000);
    EXPECT_EQ(d->last_seen_ip, "2001:db8::1");

    // A device deleted since the activity was observed: no error, no row.
    write<void>([](WriteTxn& txn) {
        return txn.record_device_activity("@a:x", "GONE", 7000, "192.0.2.1");
    });
    EXPECT_FALSE(device("@a:x", "GONE").has_value());
}

TEST_P(AccountsTest, RegistrationTokensRoundTripAndDuplicatesAreRefused) {
    RegistrationTokenRecord limited = make_token("limited", 3, 99'000);
    limited.pending = 7;  // ignored: counts start at 0
    limited.completed = 8;
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.insert_registration_token(limited); }));
    EXPECT_TRUE(write<bool>(
        [](WriteTxn& txn) { return txn.insert_registration_token(make_token("free")); }));

    auto found = find_token(*db_, "limited");
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->token, "limited");
    EXPECT_EQ(found->uses_allowed, std::optional<std::int64_t>(3));
    EXPECT_EQ(found->pending, 0);
    EXPECT_EQ(found->completed, 0);
    EXPECT_EQ(found->expiry_ts, 99'000);
    EXPECT_EQ(found->created_ts, 4000);
    auto free = find_token(*db_, "free");
    ASSERT_TRUE(free.has_value());
    EXPECT_FALSE(free->uses_allowed.has_value());  // NULL: unlimited, not 0
    EXPECT_EQ(free->expiry_ts, 0);

    // A duplicate is refused and changes nothing.
    EXPECT_FALSE(write<bool>(
        [](WriteTxn& txn) { return txn.insert_registration_token(make_token("limited", 1)); }));
    EXPECT_EQ(find_token(*db_, "limited")->uses_allowed, std::optional<std::int64_t>(3));

    // Tokens are case-sensitive and unknown ones are absent.
    EXPECT_FALSE(find_token(*db_, "LIMITED").has_value());

    auto all = read<std::vector<RegistrationTokenRecord>>(
        [](ReadTxn& txn) { return txn.list_registration_tokens(); });
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].token, "free");
    EXPECT_EQ(all[1].token, "limited");
    EXPECT_EQ(all[1].uses_allowed, std::optional<std::int64_t>(3));

    EXPECT_TRUE(write<bool>([](WriteTxn& txn) { return txn.delete_registration_token("free"); }));
    EXPECT_FALSE(write<bool>([](WriteTxn& txn) { return txn.delete_registration_token("free"); }));
    EXPECT_FALSE(find_token(*db_, "free").has_value());
    all = read<std::vector<RegistrationTokenRecord>>(
        [](ReadTxn& txn) { return txn.list_registration_tokens(); });
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].token, "limited");
}

TEST_P(AccountsTest, RegistrationTokenCountsAddUpAndNeverGoBelowZero) {
    write<bool>([](WriteTxn& txn) { return txn.insert_registration_token(make_token("t", 2)); });
    write<bool>([](WriteTxn& txn) { return txn.insert_registration_token(make_token("u", 2)); });

    // Two registrations pass the token stage, one of them completes.
    EXPECT_TRUE(
        write<bool>([](WriteTxn& txn) { return txn.update_registration_token_counts("t", 1, 0); }));
    EXPECT_TRUE(
        write<bool>([](WriteTxn& txn) { return txn.update_registration_token_counts("t", 1, 0); }));
    EXPECT_TRUE(write<bool>(
        [](WriteTxn& txn) { return txn.update_registration_token_counts("t", -1, 1); }));
    auto t = find_token(*db_, "t");
    EXPECT_EQ(t->pending, 1);
    EXPECT_EQ(t->completed, 1);
    EXPECT_EQ(find_token(*db_, "u")->pending, 0);  // only that token

    // Releasing more than is pending (a session expiring twice) stops at zero.
    EXPECT_TRUE(write<bool>(
        [](WriteTxn& txn) { return txn.update_registration_token_counts("t", -5, -3); }));
    t = find_token(*db_, "t");
    EXPECT_EQ(t->pending, 0);
    EXPECT_EQ(t->completed, 0);
    EXPECT_TRUE(
        write<bool>([](WriteTxn& txn) { return txn.update_registration_token_counts("t", 1, 0); }));
    EXPECT_EQ(find_token(*db_, "t")->pending, 1);  // counting goes on from zero

    EXPECT_FALSE(write<bool>(
        [](WriteTxn& txn) { return txn.update_registration_token_counts("nope", 1, 0); }));
    EXPECT_FALSE(find_token(*db_, "nope").has_value());
}

TEST_P(AccountsTest, RevokeAppendsToTheLogExactlyOnce) {
    EXPECT_EQ(latest_revocation(*db_), 0);  // empty log
    EXPECT_TRUE(revocations(*db_, 0).empty());

    const auto sid = add_session(*db_, "@a:x", "D1");
    const auto other = add_session(*db_, "@b:x", "D2");
    write<void>([&](WriteTxn& txn) { return txn.revoke_session(sid, 700, RevokeReason::kAdmin); });
    // Revoking an already revoked session is a no-op: no second entry.
    write<void>(
        [&](WriteTxn& txn) { return txn.revoke_session(sid, 800, RevokeReason::kExpired); });
    // A refused revocation (ts 0) appends nothing.
    EXPECT_FALSE(write_sync<void>(
        *db_, [&](WriteTxn& txn) { return txn.revoke_session(other, 0, RevokeReason::kAdmin); }));
    // Nor does one of a session that does not exist.
    write<void>([](WriteTxn& txn) { return txn.revoke_session(999, 900, RevokeReason::kAdmin); });

    auto log = revocations(*db_, 0);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_GT(log[0].id, 0);
    EXPECT_EQ(log[0].session_id, sid);
    EXPECT_EQ(log[0].user_id, "@a:x");
    EXPECT_EQ(log[0].device_id, "D1");
    EXPECT_EQ(log[0].reason, RevokeReason::kAdmin);
    EXPECT_EQ(log[0].ts, 700);
    EXPECT_EQ(latest_revocation(*db_), log[0].id);
}

TEST_P(AccountsTest, ARolledBackRevocationLeavesNoLogEntry) {
    const auto sid = add_session(*db_, "@a:x", "D1");
    auto failed = write_sync<void>(*db_, [&](WriteTxn& txn) -> Result<void> {
        if (auto r = txn.revoke_session(sid, 700, RevokeReason::kLogout); !r) return r.error();
        return errors::internal("the job fails after revoking");
    });
    EXPECT_FALSE(failed);
    EXPECT_TRUE(revocations(*db_, 0).empty());
    auto s =
        read<std::optional<SessionRecord>>([&](ReadTxn& txn) { return txn.find_session(sid); });
    EXPECT_EQ(s->revoked_ts, 0);

    // Revoked for real afterwards, it is logged once.
    write<void>([&](WriteTxn& txn) { return txn.revoke_session(sid, 800, RevokeReason::kLogout); });
    EXPECT_EQ(revocations(*db_, 0).size(), 1u);
}

TEST_P(AccountsTest, RevocationsSinceIsOrderedAndLimited) {
    std::vector<std::int64_t> sessions;
    for (int i = 0; i < 5; ++i) {
        sessions.push_back(add_session(*db_, "@u" + std::to_string(i) + ":x", "D"));
    }
    // Revoke in an order different from creation, two of them in one job.
    const std::vector<int> order = {3, 0, 4};
    for (int i : order) {
        write<void>([&](WriteTxn& txn) {
            return txn.revoke_session(sessions[static_cast<std::size_t>(i)], 1000 + i,
                                      RevokeReason::kPasswordChange);
        });
    }
    write<void>([&](WriteTxn& txn) -> Result<void> {
        if (auto r = txn.revoke_session(sessions[2], 2000, RevokeReason::kDeactivated); !r) {
            return r.error();
        }
        return txn.revoke_session(sessions[1], 2001, RevokeReason::kRefreshReuse);
    });

    auto all = revocations(*db_, 0);
    ASSERT_EQ(all.size(), 5u);
    const std::vector<std::int64_t> expected = {sessions[3], sessions[0], sessions[4], sessions[2],
                                                sessions[1]};
    for (std::size_t i = 0; i < all.size(); ++i) {
        EXPECT_EQ(all[i].session_id, expected[i]) << i;
        if (i > 0) {
            EXPECT_GT(all[i].id, all[i - 1].id);
        }
    }
    EXPECT_EQ(all[3].reason, RevokeReason::kDeactivated);
    EXPECT_EQ(all[4].reason, RevokeReason::kRefreshReuse);
    EXPECT_EQ(all[4].ts, 2001);

    // Paging with the last id seen walks the log without gaps or repeats.
    auto first = revocations(*db_, 0, 3);
    ASSERT_EQ(first.size(), 3u);
    EXPECT_EQ(first[2].session_id, sessions[4]);
    auto rest = revocations(*db_, first.back().id, 3);
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(rest[0].session_id, sessions[2]);
    EXPECT_EQ(rest[1].session_id, sessions[1]);

    EXPECT_TRUE(revocations(*db_, all.back().id).empty());
    EXPECT_EQ(latest_revocation(*db_), all.back().id);
    // No limit means nothing, not everything (SQLite reads LIMIT -1 as unlimited).
    EXPECT_TRUE(revocations(*db_, 0, 0).empty());
    EXPECT_TRUE(revocations(*db_, 0, -1).empty());
}

// The admin CLI opens the same database while the server runs. A second Database on it stands in
// for it here; the next test uses a real second process.
TEST_P(AccountsTest, ASecondOpenOfTheSameFileSeesAndIsSeen) {
    const auto sid = add_session(*db_, "@a:x", "D1");
    const std::int64_t start = latest_revocation(*db_);

    auto cli = testdb_->open();
    ASSERT_TRUE(cli) << cli.error().message;
    write_on<void>(
        **cli, [&](WriteTxn& txn) { return txn.revoke_session(sid, 500, RevokeReason::kAdmin); });
    write_on<bool>(**cli, [](WriteTxn& txn) {
        return txn.insert_registration_token(make_token("from-cli", 1));
    });
    write_on<bool>(**cli, [](WriteTxn& txn) { return txn.set_user_admin("@a:x", true); });

    // The server's readers see the other connection's commits at once.
    auto log = revocations(*db_, start);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].session_id, sid);
    EXPECT_EQ(log[0].reason, RevokeReason::kAdmin);
    EXPECT_TRUE(find_token(*db_, "from-cli").has_value());
    EXPECT_TRUE(user("@a:x")->is_admin);

    // Both keep writing, and each sees the other's writes.
    const auto sid2 = add_session(*db_, "@b:x", "D2");
    write_on<void>(
        **cli, [&](WriteTxn& txn) { return txn.revoke_session(sid2, 600, RevokeReason::kAdmin); });
    write<void>(
        [&](WriteTxn& txn) { return txn.revoke_session(sid2, 601, RevokeReason::kLogout); });
    log = revocations(**cli, start);
    ASSERT_EQ(log.size(), 2u);  // the server's revoke came second: a no-op
    EXPECT_EQ(log[1].session_id, sid2);
    EXPECT_EQ(log[1].ts, 600);
    (*cli)->close();
    EXPECT_EQ(latest_revocation(*db_), log[1].id);
}

// What the child process does in RevocationByAnotherProcessReachesTheOpenDatabase: opens the
// database, revokes `session_id`, adds a registration token. Returns the exit code (0: done).
int child_writes(const testing::TestDatabase& testdb, std::int64_t session_id) {
    auto db = testdb.open();
    if (!db) return 2;
    auto revoked = write_sync<void>(**db, [&](WriteTxn& txn) {
        return txn.revoke_session(session_id, 900, RevokeReason::kAdmin);
    });
    if (!revoked) return 3;
    auto inserted = write_sync<bool>(**db, [](WriteTxn& txn) {
        return txn.insert_registration_token(make_token("from-child", 5));
    });
    if (!inserted || !*inserted) return 4;
    (*db)->close();
    return 0;
}

class AccountsCrossProcess : public ::testing::TestWithParam<testing::Backend> {};

TEST_P(AccountsCrossProcess, RevocationByAnotherProcessReachesTheOpenDatabase) {
    if (GetParam() == testing::Backend::kPostgres) MYELIN_REQUIRE_POSTGRES();
    testing::TestDatabase testdb(GetParam());
    // Fork before this process starts any database thread: the child then owns a copy of a
    // single-threaded process and may use SQLite freely.
    int to_child[2];
    ASSERT_EQ(pipe(to_child), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        close(to_child[1]);
        std::int64_t session_id = 0;
        int code = 1;
        if (::read(to_child[0], &session_id, sizeof session_id) ==
            static_cast<ssize_t>(sizeof session_id)) {
            code = child_writes(testdb, session_id);
        }
        std::_Exit(code);  // no gtest or static teardown in the child
    }
    close(to_child[0]);

    auto opened = testdb.open();
    ASSERT_TRUE(opened) << opened.error().message;
    Database& db = **opened;
    const auto sid = add_session(db, "@a:x", "D1");
    const auto start = latest_revocation(db);
    // A read before the child writes, so that the readers hold an older snapshot's statements.
    EXPECT_TRUE(revocations(db, start).empty());

    ASSERT_EQ(::write(to_child[1], &sid, sizeof sid), static_cast<ssize_t>(sizeof sid));
    close(to_child[1]);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);

    auto log = revocations(db, start);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].session_id, sid);
    EXPECT_EQ(log[0].user_id, "@a:x");
    EXPECT_EQ(log[0].reason, RevokeReason::kAdmin);
    auto s = read_on<std::optional<SessionRecord>>(
        db, [&](ReadTxn& txn) { return txn.find_session(sid); });
    EXPECT_EQ(s->revoked_ts, 900);
    EXPECT_TRUE(find_token(db, "from-child").has_value());

    // The server's writer carries on after the other process's commits.
    const auto sid2 = add_session(db, "@b:x", "D2");
    write_on<void>(
        db, [&](WriteTxn& txn) { return txn.revoke_session(sid2, 950, RevokeReason::kLogout); });
    log = revocations(db, start);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_EQ(log[1].session_id, sid2);
}

MYELIN_INSTANTIATE_ON_BACKENDS(AccountsTest);
MYELIN_INSTANTIATE_ON_BACKENDS(AccountsCrossProcess);

}  // namespace
}  // namespace myelin::storage
