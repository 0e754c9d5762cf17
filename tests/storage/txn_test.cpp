// Every ReadTxn / WriteTxn method, round-tripped through write_sync and read_sync, with the
// semantics database.hpp promises, on every backend.

#include <algorithm>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"

#include "storage_test_support.hpp"
#include "test_database.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_hash;
using testing::make_session;
using testing::make_user;

class TxnTest : public testing::BackendTest {
protected:
    // Runs `fn` in its own write job and returns its value, failing the test on an error.
    template <typename T, typename Fn>
    T write(Fn fn) {
        Result<T> r = write_sync<T>(*db_, std::move(fn));
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        if constexpr (!std::is_void_v<T>) return r ? std::move(*r) : T{};
    }
    template <typename T, typename Fn>
    T read(Fn fn) {
        Result<T> r = read_sync<T>(*db_, std::move(fn));
        EXPECT_TRUE(r) << (r ? "" : r.error().message);
        return r ? std::move(*r) : T{};
    }

    // A user, a device and a session on it; returns the session id.
    std::int64_t add_session(const std::string& user_id, const std::string& device_id) {
        return write<std::int64_t>([&](WriteTxn& txn) -> Result<std::int64_t> {
            if (auto u = txn.insert_user(make_user(user_id)); !u) return u.error();
            if (auto d = txn.ensure_device(make_device(user_id, device_id)); !d) return d.error();
            return txn.insert_session(make_session(user_id, device_id));
        });
    }

    void add_access_token(std::int64_t session_id, std::uint8_t fill, std::int64_t generation) {
        write<void>([&](WriteTxn& txn) {
            AccessTokenRecord token;
            token.token_hash = make_hash(fill);
            token.session_id = session_id;
            token.generation = generation;
            token.issued_ts = 100 + generation;
            token.expires_ts = 5000 + generation;
            return txn.insert_access_token(token);
        });
    }

    void add_refresh_token(std::int64_t session_id, std::uint8_t fill, std::int64_t generation,
                           std::vector<std::uint8_t> sealed = {}) {
        write<void>([&](WriteTxn& txn) {
            RefreshTokenRecord token;
            token.token_hash = make_hash(fill);
            token.session_id = session_id;
            token.generation = generation;
            token.issued_ts = 200 + generation;
            token.expires_ts = 7000 + generation;
            token.sealed_successor = sealed;
            return txn.insert_refresh_token(token);
        });
    }

    std::optional<SessionRecord> session(std::int64_t id) {
        return read<std::optional<SessionRecord>>(
            [id](ReadTxn& txn) { return txn.find_session(id); });
    }

    std::optional<RefreshTokenLookup> refresh_token(std::uint8_t fill) {
        return read<std::optional<RefreshTokenLookup>>(
            [fill](ReadTxn& txn) { return txn.find_refresh_token(make_hash(fill)); });
    }
};

TEST_P(TxnTest, UsersRoundTripAndDuplicatesAreRefused) {
    UserRecord alice = make_user("@alice:x", 1234);
    alice.is_admin = true;
    alice.is_guest = true;
    alice.deactivated = true;
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.insert_user(alice); }));

    UserRecord other = make_user("@alice:x", 99);
    other.password_hash = "different";
    EXPECT_FALSE(write<bool>([&](WriteTxn& txn) { return txn.insert_user(other); }));

    auto found =
        read<std::optional<UserRecord>>([](ReadTxn& txn) { return txn.find_user("@alice:x"); });
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->user_id, "@alice:x");
    EXPECT_EQ(found->password_hash, alice.password_hash);  // the duplicate changed nothing
    EXPECT_TRUE(found->is_admin);
    EXPECT_TRUE(found->is_guest);
    EXPECT_TRUE(found->deactivated);
    EXPECT_EQ(found->created_ts, 1234);

    EXPECT_FALSE(read<std::optional<UserRecord>>([](ReadTxn& txn) {
                     return txn.find_user("@bob:x");
                 }).has_value());
}

TEST_P(TxnTest, SetPasswordHashReplacesIt) {
    write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@a:x")); });
    write<void>([](WriteTxn& txn) { return txn.set_password_hash("@a:x", "$argon2id$new"); });
    auto found =
        read<std::optional<UserRecord>>([](ReadTxn& txn) { return txn.find_user("@a:x"); });
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->password_hash, "$argon2id$new");
    UserRecord guest = make_user("@g:x");
    guest.password_hash.clear();
    write<bool>([&](WriteTxn& txn) { return txn.insert_user(guest); });
    auto g = read<std::optional<UserRecord>>([](ReadTxn& txn) { return txn.find_user("@g:x"); });
    ASSERT_TRUE(g.has_value());
    EXPECT_EQ(g->password_hash, "");
}

TEST_P(TxnTest, DevicesEnsureListAndDelete) {
    write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@a:x")); });
    DeviceRecord phone = make_device("@a:x", "PHONE");
    phone.last_seen_ts = 77;
    phone.last_seen_ip = "10.0.0.1";
    DeviceRecord laptop = make_device("@a:x", "LAPTOP");
    laptop.display_name.reset();
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.ensure_device(phone); }));
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.ensure_device(laptop); }));

    // An existing device (and its display name) is left as it is.
    DeviceRecord renamed = phone;
    renamed.display_name = "Renamed";
    EXPECT_FALSE(write<bool>([&](WriteTxn& txn) { return txn.ensure_device(renamed); }));

    auto found = read<std::optional<DeviceRecord>>(
        [](ReadTxn& txn) { return txn.find_device("@a:x", "PHONE"); });
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->display_name, std::optional<std::string>("Phone"));
    EXPECT_EQ(found->created_ts, 2000);
    EXPECT_EQ(found->last_seen_ts, 77);
    EXPECT_EQ(found->last_seen_ip, "10.0.0.1");

    auto devices =
        read<std::vector<DeviceRecord>>([](ReadTxn& txn) { return txn.list_devices("@a:x"); });
    ASSERT_EQ(devices.size(), 2u);
    EXPECT_EQ(devices[0].device_id, "LAPTOP");  // ordered by device_id
    EXPECT_FALSE(devices[0].display_name.has_value());
    EXPECT_EQ(devices[1].device_id, "PHONE");

    write<void>([](WriteTxn& txn) { return txn.delete_device("@a:x", "PHONE"); });
    write<void>([](WriteTxn& txn) { return txn.delete_device("@a:x", "NO_SUCH"); });  // no-op
    EXPECT_FALSE(read<std::optional<DeviceRecord>>([](ReadTxn& txn) {
                     return txn.find_device("@a:x", "PHONE");
                 }).has_value());
    EXPECT_EQ(read<std::vector<DeviceRecord>>([](ReadTxn& txn) {
                  return txn.list_devices("@a:x");
              }).size(),
              1u);
    EXPECT_TRUE(read<std::vector<DeviceRecord>>([](ReadTxn& txn) {
                    return txn.list_devices("@b:x");
                }).empty());
}

TEST_P(TxnTest, SessionsRoundTripAndLiveSessionsFilter) {
    write<bool>([](WriteTxn& txn) { return txn.insert_user(make_user("@a:x")); });
    SessionRecord s = make_session("@a:x", "D1");
    s.session_id = 4242;  // ignored
    s.is_guest = true;
    s.current_generation = 3;
    s.used_generation = 2;
    const auto id1 = write<std::int64_t>([&](WriteTxn& txn) { return txn.insert_session(s); });
    const auto id2 = write<std::int64_t>(
        [](WriteTxn& txn) { return txn.insert_session(make_session("@a:x", "D2")); });
    const auto id3 = write<std::int64_t>(
        [](WriteTxn& txn) { return txn.insert_session(make_session("@a:x", "D1")); });
    const auto other = write<std::int64_t>(
        [](WriteTxn& txn) { return txn.insert_session(make_session("@b:x", "D1")); });
    EXPECT_NE(id1, 4242);
    EXPECT_LT(id1, id2);
    EXPECT_LT(id2, id3);

    auto found = session(id1);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->session_id, id1);
    EXPECT_EQ(found->user_id, "@a:x");
    EXPECT_EQ(found->device_id, "D1");
    EXPECT_TRUE(found->refreshable);
    EXPECT_TRUE(found->is_guest);
    EXPECT_EQ(found->created_ts, 3000);
    EXPECT_EQ(found->ends_ts, 9'000'000);
    EXPECT_EQ(found->current_generation, 3);
    EXPECT_EQ(found->used_generation, 2);
    EXPECT_EQ(found->revoked_ts, 0);
    EXPECT_EQ(found->revoked_reason, RevokeReason::kNone);
    EXPECT_FALSE(session(id3 + 1000).has_value());

    write<void>(
        [&](WriteTxn& txn) { return txn.revoke_session(id3, 5555, RevokeReason::kReplaced); });

    auto ids = [](const std::vector<SessionRecord>& sessions) {
        std::vector<std::int64_t> out;
        for (const auto& x : sessions) out.push_back(x.session_id);
        return out;
    };
    auto all = read<std::vector<SessionRecord>>(
        [](ReadTxn& txn) { return txn.live_sessions("@a:x", std::nullopt); });
    EXPECT_EQ(ids(all), (std::vector<std::int64_t>{id1, id2}));
    auto d1 = read<std::vector<SessionRecord>>(
        [](ReadTxn& txn) { return txn.live_sessions("@a:x", std::string_view("D1")); });
    EXPECT_EQ(ids(d1), (std::vector<std::int64_t>{id1}));
    auto b = read<std::vector<SessionRecord>>(
        [](ReadTxn& txn) { return txn.live_sessions("@b:x", std::nullopt); });
    EXPECT_EQ(ids(b), (std::vector<std::int64_t>{other}));

    auto revoked = session(id3);
    ASSERT_TRUE(revoked.has_value());
    EXPECT_EQ(revoked->revoked_ts, 5555);
    EXPECT_EQ(revoked->revoked_reason, RevokeReason::kReplaced);
}

TEST_P(TxnTest, TokenLookupsAreJoinedWithTheirSessionEvenWhenRevoked) {
    const auto sid = add_session("@a:x", "D");
    add_access_token(sid, 1, 0);
    add_refresh_token(sid, 2, 0, {9, 8, 7});

    auto access = read<std::optional<AccessTokenLookup>>(
        [](ReadTxn& txn) { return txn.find_access_token(make_hash(1)); });
    ASSERT_TRUE(access.has_value());
    EXPECT_EQ(access->token.token_hash, make_hash(1));
    EXPECT_EQ(access->token.session_id, sid);
    EXPECT_EQ(access->token.generation, 0);
    EXPECT_EQ(access->token.issued_ts, 100);
    EXPECT_EQ(access->token.expires_ts, 5000);
    EXPECT_EQ(access->session.session_id, sid);
    EXPECT_EQ(access->session.user_id, "@a:x");
    EXPECT_EQ(access->session.device_id, "D");

    auto refresh = refresh_token(2);
    ASSERT_TRUE(refresh.has_value());
    EXPECT_EQ(refresh->token.token_hash, make_hash(2));
    EXPECT_EQ(refresh->token.issued_ts, 200);
    EXPECT_EQ(refresh->token.expires_ts, 7000);
    EXPECT_EQ(refresh->token.sealed_successor, (std::vector<std::uint8_t>{9, 8, 7}));
    EXPECT_EQ(refresh->session.session_id, sid);
    EXPECT_TRUE(refresh->session.refreshable);

    // An access hash is not a refresh hash and vice versa; unknown hashes are not found.
    EXPECT_FALSE(refresh_token(1).has_value());
    EXPECT_FALSE(read<std::optional<AccessTokenLookup>>([](ReadTxn& txn) {
                     return txn.find_access_token(make_hash(2));
                 }).has_value());

    write<void>([&](WriteTxn& txn) { return txn.revoke_session(sid, 10, RevokeReason::kLogout); });
    access = read<std::optional<AccessTokenLookup>>(
        [](ReadTxn& txn) { return txn.find_access_token(make_hash(1)); });
    ASSERT_TRUE(access.has_value());
    EXPECT_EQ(access->session.revoked_ts, 10);
    EXPECT_EQ(access->session.revoked_reason, RevokeReason::kLogout);
    refresh = refresh_token(2);
    ASSERT_TRUE(refresh.has_value());
    EXPECT_EQ(refresh->session.revoked_reason, RevokeReason::kLogout);
}

TEST_P(TxnTest, TokensNeedAnExistingSessionAndAUniqueHash) {
    const auto sid = add_session("@a:x", "D");
    add_access_token(sid, 1, 0);
    Result<void> duplicate = write_sync<void>(*db_, [&](WriteTxn& txn) {
        AccessTokenRecord token;
        token.token_hash = make_hash(1);
        token.session_id = sid;
        return txn.insert_access_token(token);
    });
    EXPECT_FALSE(duplicate);
    Result<void> orphan = write_sync<void>(*db_, [&](WriteTxn& txn) {
        RefreshTokenRecord token;
        token.token_hash = make_hash(3);
        token.session_id = sid + 100;
        return txn.insert_refresh_token(token);
    });
    EXPECT_FALSE(orphan);
    EXPECT_FALSE(refresh_token(3).has_value());
}

TEST_P(TxnTest, UpdateSessionGenerationsIsACompareAndSwap) {
    const auto sid = add_session("@a:x", "D");
    // expected 0 matches: 0 -> current 1, used 0
    EXPECT_TRUE(
        write<bool>([&](WriteTxn& txn) { return txn.update_session_generations(sid, 0, 1, 0); }));
    // A second writer still expecting 0 loses.
    EXPECT_FALSE(
        write<bool>([&](WriteTxn& txn) { return txn.update_session_generations(sid, 0, 1, 1); }));
    auto s = session(sid);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->current_generation, 1);
    EXPECT_EQ(s->used_generation, 0);

    EXPECT_TRUE(
        write<bool>([&](WriteTxn& txn) { return txn.update_session_generations(sid, 1, 1, 1); }));
    s = session(sid);
    EXPECT_EQ(s->used_generation, 1);

    // An unknown session matches nothing.
    EXPECT_FALSE(write<bool>(
        [&](WriteTxn& txn) { return txn.update_session_generations(sid + 99, 1, 2, 1); }));

    // A revoked session matches nothing, even with the right expected value.
    write<void>(
        [&](WriteTxn& txn) { return txn.revoke_session(sid, 50, RevokeReason::kRefreshReuse); });
    EXPECT_FALSE(
        write<bool>([&](WriteTxn& txn) { return txn.update_session_generations(sid, 1, 2, 1); }));
    s = session(sid);
    EXPECT_EQ(s->current_generation, 1);
}

TEST_P(TxnTest, SealedSuccessorsAreSetAndWiped) {
    const auto sid = add_session("@a:x", "D");
    const auto other = add_session("@b:x", "D");
    add_refresh_token(sid, 1, 0);
    add_refresh_token(sid, 2, 1);
    add_refresh_token(other, 3, 0, {1});

    write<void>([](WriteTxn& txn) { return txn.set_sealed_successor(make_hash(1), {4, 5, 6}); });
    EXPECT_EQ(refresh_token(1)->token.sealed_successor, (std::vector<std::uint8_t>{4, 5, 6}));
    write<void>([](WriteTxn& txn) { return txn.set_sealed_successor(make_hash(1), {}); });
    EXPECT_TRUE(refresh_token(1)->token.sealed_successor.empty());

    write<void>([](WriteTxn& txn) { return txn.set_sealed_successor(make_hash(1), {7}); });
    write<void>([](WriteTxn& txn) { return txn.set_sealed_successor(make_hash(2), {8}); });
    write<void>([&](WriteTxn& txn) { return txn.wipe_sealed_successors(sid); });
    EXPECT_TRUE(refresh_token(1)->token.sealed_successor.empty());
    EXPECT_TRUE(refresh_token(2)->token.sealed_successor.empty());
    EXPECT_EQ(refresh_token(3)->token.sealed_successor, (std::vector<std::uint8_t>{1}));
}

// The rotation of `sid` from generation `from` (the presented token `old_fill`) to from + 1:
// the new access token is make_hash(new_fill), the new refresh token make_hash(new_fill + 1).
SessionRotation make_rotation(std::int64_t sid, std::int64_t from, std::uint8_t old_fill,
                              std::uint8_t new_fill, std::vector<std::uint8_t> sealed) {
    SessionRotation r;
    r.session_id = sid;
    r.expected_current = from;
    r.new_current = from + 1;
    r.new_used = from;
    r.access.token_hash = make_hash(new_fill);
    r.access.generation = from + 1;
    r.access.issued_ts = 300;
    r.access.expires_ts = 4000;
    r.refresh.token_hash = make_hash(static_cast<std::uint8_t>(new_fill + 1));
    r.refresh.generation = from + 1;
    r.refresh.issued_ts = 301;
    r.refresh.expires_ts = 9000;
    r.old_refresh_hash = make_hash(old_fill);
    r.old_sealed_successor = std::move(sealed);
    return r;
}

TEST_P(TxnTest, RotateSessionChangesNothingWhenTheCompareAndSwapMisses) {
    const auto sid = add_session("@a:x", "D");
    add_refresh_token(sid, 1, 0);
    add_refresh_token(sid, 2, 0, {9});  // an older seal of the session
    // The session is at generation 0: expecting 3 misses.
    EXPECT_FALSE(write<bool>(
        [&](WriteTxn& txn) { return txn.rotate_session(make_rotation(sid, 3, 1, 10, {7})); }));
    // An unknown session misses too.
    EXPECT_FALSE(write<bool>(
        [&](WriteTxn& txn) { return txn.rotate_session(make_rotation(sid + 99, 0, 1, 10, {7})); }));
    auto s = session(sid);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->current_generation, 0);
    EXPECT_EQ(s->used_generation, 0);
    EXPECT_FALSE(read<bool>([](ReadTxn& txn) -> Result<bool> {
        auto a = txn.find_access_token(make_hash(10));
        if (!a) return a.error();
        return a->has_value();
    }));
    EXPECT_FALSE(refresh_token(11).has_value());
    EXPECT_TRUE(refresh_token(1)->token.sealed_successor.empty());
    EXPECT_EQ(refresh_token(2)->token.sealed_successor, (std::vector<std::uint8_t>{9}));

    // A revoked session misses even with the right generation.
    write<void>([&](WriteTxn& txn) { return txn.revoke_session(sid, 50, RevokeReason::kAdmin); });
    add_refresh_token(sid, 3, 0, {8});
    EXPECT_FALSE(write<bool>(
        [&](WriteTxn& txn) { return txn.rotate_session(make_rotation(sid, 0, 1, 10, {7})); }));
    EXPECT_EQ(session(sid)->current_generation, 0);
    EXPECT_FALSE(refresh_token(11).has_value());
    EXPECT_EQ(refresh_token(3)->token.sealed_successor, (std::vector<std::uint8_t>{8}));
}

TEST_P(TxnTest, RotateSessionInsertsThePairWipesOlderSealsAndSealsTheOldToken) {
    const auto sid = add_session("@a:x", "D");
    const auto other = add_session("@b:x", "D");
    add_refresh_token(sid, 1, 0);
    add_refresh_token(sid, 2, 0, {9});    // a stale seal of the session: wiped
    add_refresh_token(other, 3, 0, {5});  // another session's: kept
    auto rotation = make_rotation(sid, 0, 1, 10, {7, 7});
    rotation.access.session_id = other;  // ignored: the pair joins the rotated session
    rotation.refresh.session_id = other;
    rotation.refresh.sealed_successor = {6};  // ignored: a new token has no seal
    EXPECT_TRUE(write<bool>([&](WriteTxn& txn) { return txn.rotate_session(rotation); }));

    auto s = session(sid);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->current_generation, 1);
    EXPECT_EQ(s->used_generation, 0);
    auto access = read<std::optional<AccessTokenLookup>>(
        [](ReadTxn& txn) { return txn.find_access_token(make_hash(10)); });
    ASSERT_TRUE(access.has_value());
    EXPECT_EQ(access->token.session_id, sid);
    EXPECT_EQ(access->token.generation, 1);
    EXPECT_EQ(access->token.issued_ts, 300);
    EXPECT_EQ(access->token.expires_ts, 4000);
    auto fresh = refresh_token(11);
    ASSERT_TRUE(fresh.has_value());
    EXPECT_EQ(fresh->token.session_id, sid);
    EXPECT_EQ(fresh->token.generation, 1);
    EXPECT_EQ(fresh->token.issued_ts, 301);
    EXPECT_EQ(fresh->token.expires_ts, 9000);
    EXPECT_TRUE(fresh->token.sealed_successor.empty());
    EXPECT_EQ(refresh_token(1)->token.sealed_successor, (std::vector<std::uint8_t>{7, 7}));
    EXPECT_TRUE(refresh_token(2)->token.sealed_successor.empty());
    EXPECT_EQ(refresh_token(3)->token.sealed_successor, (std::vector<std::uint8_t>{5}));

    // The next rotation, legacy (no seal): the previous seal goes, none is left.
    EXPECT_TRUE(write<bool>(
        [&](WriteTxn& txn) { return txn.rotate_session(make_rotation(sid, 1, 11, 20, {})); }));
    EXPECT_EQ(session(sid)->current_generation, 2);
    EXPECT_TRUE(refresh_token(1)->token.sealed_successor.empty());
    EXPECT_TRUE(refresh_token(11)->token.sealed_successor.empty());
    EXPECT_TRUE(refresh_token(21).has_value());
    EXPECT_EQ(refresh_token(3)->token.sealed_successor, (std::vector<std::uint8_t>{5}));
}

TEST_P(TxnTest, AFailedRotateSessionLeavesTheCompareAndSwapUndone) {
    const auto sid = add_session("@a:x", "D");
    add_refresh_token(sid, 1, 0);
    add_refresh_token(sid, 2, 0, {9});
    add_access_token(sid, 10, 0);  // the new access token's hash is taken
    auto r = write_sync<bool>(
        *db_, [&](WriteTxn& txn) { return txn.rotate_session(make_rotation(sid, 0, 1, 10, {7})); });
    EXPECT_FALSE(r);
    auto s = session(sid);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->current_generation, 0);
    EXPECT_FALSE(refresh_token(11).has_value());
    EXPECT_TRUE(refresh_token(1)->token.sealed_successor.empty());
    EXPECT_EQ(refresh_token(2)->token.sealed_successor, (std::vector<std::uint8_t>{9}));
}

// What a refresh's write job (service/session_service.cpp, reduced) would do with rotate_session:
// rotate when the presented token is the current one, answer a retry when it is the previous one.
enum class RaceOutcome { kRotated, kRetried, kReused };

Result<RaceOutcome> rotate_job(WriteTxn& txn, std::uint8_t presented, std::uint8_t next_fill) {
    auto lookup = txn.find_refresh_token(make_hash(presented));
    if (!lookup) return lookup.error();
    if (!*lookup) return errors::internal("the presented token is unknown");
    const auto& s = (*lookup)->session;
    const auto g = (*lookup)->token.generation;
    if (g == s.current_generation) {
        auto rotated =
            txn.rotate_session(make_rotation(s.session_id, g, presented, next_fill, {next_fill}));
        if (!rotated) return rotated.error();
        if (!*rotated) return errors::unavailable("Concurrent refresh; retry", 1);
        return RaceOutcome::kRotated;
    }
    if (g + 1 == s.current_generation) return RaceOutcome::kRetried;
    return RaceOutcome::kReused;
}

// Two opens of one database stand in for two server processes: each round, 8 clients (4
// through each) present the current refresh token at once. Exactly one rotates, the others see
// its rotation (a retry), nobody is refused: one lineage, one token pair per generation.
TEST_P(TxnTest, RotationsRacingFromTwoProcessesKeepOneLineage) {
    auto second = testdb_->open();
    ASSERT_TRUE(second) << second.error().message;
    const auto sid = add_session("@r:x", "D");
    add_refresh_token(sid, 2, 0);
    constexpr int kRounds = 5;
    constexpr int kClients = 8;
    std::uint8_t current_fill = 2;
    for (int round = 0; round < kRounds; ++round) {
        const auto next_fill = static_cast<std::uint8_t>(10 + 2 * round);
        std::latch start(kClients);
        std::vector<std::thread> clients;
        std::vector<Result<RaceOutcome>> results(kClients,
                                                 Result<RaceOutcome>(RaceOutcome::kReused));
        for (int c = 0; c < kClients; ++c) {
            clients.emplace_back([&, c] {
                Database& db = c % 2 == 0 ? *db_ : **second;
                start.arrive_and_wait();
                results[static_cast<std::size_t>(c)] = write_sync<RaceOutcome>(
                    db, [&](WriteTxn& txn) { return rotate_job(txn, current_fill, next_fill); });
            });
        }
        for (auto& t : clients) t.join();
        int rotated = 0;
        int retried = 0;
        for (const auto& r : results) {
            ASSERT_TRUE(r) << "round " << round << ": " << r.error().message;
            if (*r == RaceOutcome::kRotated) ++rotated;
            if (*r == RaceOutcome::kRetried) ++retried;
        }
        EXPECT_EQ(rotated, 1) << "round " << round;
        EXPECT_EQ(retried, kClients - 1) << "round " << round;
        // The winner's seal is on the token it presented, and only there.
        EXPECT_EQ(refresh_token(current_fill)->token.sealed_successor,
                  (std::vector<std::uint8_t>{next_fill}));
        current_fill = static_cast<std::uint8_t>(next_fill + 1);
    }
    (*second)->close();

    auto s = session(sid);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->current_generation, kRounds);
    auto lineage =
        read<std::vector<std::int64_t>>([&](ReadTxn& txn) -> Result<std::vector<std::int64_t>> {
            std::vector<std::int64_t> generations;
            for (int round = 0; round < kRounds; ++round) {
                auto t =
                    txn.find_refresh_token(make_hash(static_cast<std::uint8_t>(11 + 2 * round)));
                if (!t) return t.error();
                if (*t) generations.push_back((*t)->token.generation);
            }
            return generations;
        });
    EXPECT_EQ(lineage, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
    // Only the last rotated-out token still holds a seal.
    EXPECT_TRUE(refresh_token(2)->token.sealed_successor.empty());
    EXPECT_FALSE(refresh_token(17)->token.sealed_successor.empty());
}

TEST_P(TxnTest, RevokeWipesSealedBlobsAndIsIdempotent) {
    const auto sid = add_session("@a:x", "D");
    const auto other = add_session("@b:x", "D");
    add_refresh_token(sid, 1, 0, {1, 2, 3});
    add_refresh_token(other, 2, 0, {4});

    write<void>([&](WriteTxn& txn) { return txn.revoke_session(sid, 100, RevokeReason::kAdmin); });
    auto s = session(sid);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(s->revoked_ts, 100);
    EXPECT_EQ(s->revoked_reason, RevokeReason::kAdmin);
    EXPECT_TRUE(refresh_token(1)->token.sealed_successor.empty());
    EXPECT_EQ(refresh_token(2)->token.sealed_successor, (std::vector<std::uint8_t>{4}));
    EXPECT_TRUE(refresh_token(1).has_value());  // token rows stay

    // Revoking again keeps the first time and reason.
    write<void>(
        [&](WriteTxn& txn) { return txn.revoke_session(sid, 200, RevokeReason::kExpired); });
    s = session(sid);
    EXPECT_EQ(s->revoked_ts, 100);
    EXPECT_EQ(s->revoked_reason, RevokeReason::kAdmin);

    // A zero timestamp would read as "live": refused.
    Result<void> zero = write_sync<void>(
        *db_, [&](WriteTxn& txn) { return txn.revoke_session(other, 0, RevokeReason::kAdmin); });
    EXPECT_FALSE(zero);
    EXPECT_EQ(session(other)->revoked_ts, 0);
}

TEST_P(TxnTest, DeleteSessionTokensRemovesOnlyThatSessionsTokens) {
    const auto sid = add_session("@a:x", "D");
    const auto other = add_session("@b:x", "D");
    add_access_token(sid, 1, 0);
    add_refresh_token(sid, 2, 0);
    add_access_token(other, 3, 0);
    add_refresh_token(other, 4, 0);

    write<void>([&](WriteTxn& txn) { return txn.delete_session_tokens(sid); });
    EXPECT_FALSE(read<std::optional<AccessTokenLookup>>([](ReadTxn& txn) {
                     return txn.find_access_token(make_hash(1));
                 }).has_value());
    EXPECT_FALSE(refresh_token(2).has_value());
    EXPECT_TRUE(read<std::optional<AccessTokenLookup>>([](ReadTxn& txn) {
                    return txn.find_access_token(make_hash(3));
                }).has_value());
    EXPECT_TRUE(refresh_token(4).has_value());
    EXPECT_TRUE(session(sid).has_value());  // the session row itself stays
}

TEST_P(TxnTest, SecurityEventsNewestFirstWithLimit) {
    for (int i = 0; i < 5; ++i) {
        write<void>([i](WriteTxn& txn) {
            SecurityEventRecord event;
            event.user_id = "@a:x";
            event.device_id = i % 2 == 0 ? "D" : "";
            event.ts = 1000 + i;
            event.kind = "login";
            event.detail = "event " + std::to_string(i);
            return txn.insert_security_event(event);
        });
    }
    write<void>([](WriteTxn& txn) {
        SecurityEventRecord event;
        event.user_id = "@b:x";
        event.ts = 1;
        event.kind = "session_revoked";
        return txn.insert_security_event(event);
    });

    auto events = read<std::vector<SecurityEventRecord>>(
        [](ReadTxn& txn) { return txn.security_events("@a:x", 3); });
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].detail, "event 4");
    EXPECT_EQ(events[1].detail, "event 3");
    EXPECT_EQ(events[2].detail, "event 2");
    EXPECT_GT(events[0].id, events[1].id);
    EXPECT_EQ(events[0].ts, 1004);
    EXPECT_EQ(events[0].kind, "login");
    EXPECT_EQ(events[0].device_id, "D");
    EXPECT_EQ(events[1].device_id, "");
    EXPECT_EQ(events[0].user_id, "@a:x");

    EXPECT_EQ(read<std::vector<SecurityEventRecord>>([](ReadTxn& txn) {
                  return txn.security_events("@a:x", 100);
              }).size(),
              5u);
    EXPECT_TRUE(read<std::vector<SecurityEventRecord>>([](ReadTxn& txn) {
                    return txn.security_events("@a:x", 0);
                }).empty());
    auto b = read<std::vector<SecurityEventRecord>>(
        [](ReadTxn& txn) { return txn.security_events("@b:x", 10); });
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].kind, "session_revoked");
}

TEST_P(TxnTest, ForEachLiveAccessTokenSkipsRevokedSessionsAndOldGenerations) {
    const auto live = add_session("@a:x", "D1");
    const auto revoked = add_session("@a:x", "D2");
    add_access_token(live, 1, 0);  // generation 0 < used 1 after the update below: skipped
    add_access_token(live, 2, 1);  // used generation: kept
    add_access_token(live, 3, 2);  // the newest pair, not yet used: kept
    add_access_token(revoked, 4, 0);
    ASSERT_TRUE(
        write<bool>([&](WriteTxn& txn) { return txn.update_session_generations(live, 0, 2, 1); }));
    write<void>(
        [&](WriteTxn& txn) { return txn.revoke_session(revoked, 9, RevokeReason::kLogout); });

    auto seen = read<std::vector<AccessTokenLookup>>(
        [](ReadTxn& txn) -> Result<std::vector<AccessTokenLookup>> {
            std::vector<AccessTokenLookup> out;
            auto r = txn.for_each_live_access_token(
                [&](const AccessTokenLookup& lookup) { out.push_back(lookup); });
            if (!r) return r.error();
            return out;
        });
    std::vector<TokenHash> hashes;
    for (const auto& lookup : seen) {
        hashes.push_back(lookup.token.token_hash);
        EXPECT_EQ(lookup.session.session_id, live);
        EXPECT_EQ(lookup.session.used_generation, 1);
    }
    std::sort(hashes.begin(), hashes.end());
    EXPECT_EQ(hashes, (std::vector<TokenHash>{make_hash(2), make_hash(3)}));
}

TEST_P(TxnTest, PruneSecurityEventsDeletesOnlyOldRowsInBoundedBatches) {
    // Timestamps out of id order, as clocks and queues can produce them.
    for (std::int64_t ts : {50, 10, 300, 20, 40, 30, 200}) {
        write<void>([ts](WriteTxn& txn) {
            SecurityEventRecord event;
            event.user_id = ts % 20 == 0 ? "@a:x" : "@b:x";
            event.ts = ts;
            event.kind = "login";
            return txn.insert_security_event(event);
        });
    }
    auto remaining = [this](const std::string& user) {
        std::vector<std::int64_t> out;
        for (const auto& e : read<std::vector<SecurityEventRecord>>(
                 [&](ReadTxn& txn) { return txn.security_events(user, 100); })) {
            out.push_back(e.ts);
        }
        std::sort(out.begin(), out.end());
        return out;
    };
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_security_events(100, 0); }),
              0);
    // The oldest first, at most `limit`, of every user.
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_security_events(100, 2); }),
              2);
    EXPECT_EQ(remaining("@a:x"), (std::vector<std::int64_t>{40, 200, 300}));
    EXPECT_EQ(remaining("@b:x"), (std::vector<std::int64_t>{30, 50}));
    // ts < before_ts, strictly: 200 stays.
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_security_events(200, 10); }),
              3);
    EXPECT_EQ(remaining("@a:x"), (std::vector<std::int64_t>{200, 300}));
    EXPECT_TRUE(remaining("@b:x").empty());
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_security_events(200, 10); }),
              0);
}

TEST_P(TxnTest, PruneRevocationLogRecordsWhatItDeleted) {
    std::vector<std::int64_t> sessions;
    for (int i = 0; i < 4; ++i) sessions.push_back(add_session("@a:x", "D" + std::to_string(i)));
    // Revoked at ts 10, 40, 20, 30: timestamps not in id order.
    const std::int64_t ts[] = {10, 40, 20, 30};
    for (std::size_t i = 0; i < sessions.size(); ++i) {
        write<void>([&](WriteTxn& txn) {
            return txn.revoke_session(sessions[i], ts[i], RevokeReason::kAdmin);
        });
    }
    auto pruned_through = [this] {
        return read<std::int64_t>([](ReadTxn& txn) { return txn.revocation_log_pruned_through(); });
    };
    auto latest = [this] {
        return read<std::int64_t>([](ReadTxn& txn) { return txn.latest_revocation_id(); });
    };
    auto ids = [this] {
        std::vector<std::int64_t> out;
        for (const auto& r : read<std::vector<RevocationRecord>>(
                 [](ReadTxn& txn) { return txn.revocations_since(0, 100); })) {
            out.push_back(r.id);
        }
        return out;
    };
    // Log ids increase with each revocation but need not be dense (PostgreSQL's identity values
    // are not), so the test names them by position: id[i] logs sessions[i].
    const std::vector<std::int64_t> id = ids();
    ASSERT_EQ(id.size(), 4u);
    EXPECT_TRUE(std::is_sorted(id.begin(), id.end()));
    EXPECT_EQ(pruned_through(), 0);
    EXPECT_EQ(latest(), id[3]);
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_revocation_log(5, 10); }),
              0);
    EXPECT_EQ(pruned_through(), 0);  // nothing deleted, nothing marked

    // ts < 35 matches id[0], id[2], id[3]; the two oldest (ts 10 and 20: id[0], id[2]) go first.
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_revocation_log(35, 2); }),
              2);
    EXPECT_EQ(ids(), (std::vector<std::int64_t>{id[1], id[3]}));
    EXPECT_EQ(pruned_through(), id[2]);
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_revocation_log(35, 10); }),
              1);
    EXPECT_EQ(ids(), (std::vector<std::int64_t>{id[1]}));
    EXPECT_EQ(pruned_through(), id[3]);
    // The mark never goes down, and the newest id counts pruned entries too.
    EXPECT_EQ(write<std::int64_t>([](WriteTxn& txn) { return txn.prune_revocation_log(100, 10); }),
              1);
    EXPECT_TRUE(ids().empty());
    EXPECT_EQ(pruned_through(), id[3]);
    EXPECT_EQ(latest(), id[3]);
    // The sessions stay revoked: pruning the log changes nothing else.
    auto revoked = read<std::vector<SessionRecord>>(
        [](ReadTxn& txn) { return txn.revoked_sessions_after(0, 100); });
    EXPECT_EQ(revoked.size(), sessions.size());
}

TEST_P(TxnTest, RevokedSessionsAfterPagesThroughRevokedOnes) {
    std::vector<std::int64_t> sessions;
    for (int i = 0; i < 5; ++i) sessions.push_back(add_session("@a:x", "D" + std::to_string(i)));
    for (std::size_t i : {0u, 2u, 3u}) {
        write<void>([&](WriteTxn& txn) {
            return txn.revoke_session(sessions[i], 77, RevokeReason::kPasswordChange);
        });
    }
    auto page = [this](std::int64_t after, int limit) {
        std::vector<std::int64_t> out;
        for (const auto& s : read<std::vector<SessionRecord>>(
                 [&](ReadTxn& txn) { return txn.revoked_sessions_after(after, limit); })) {
            EXPECT_EQ(s.revoked_reason, RevokeReason::kPasswordChange);
            EXPECT_EQ(s.revoked_ts, 77);
            out.push_back(s.session_id);
        }
        return out;
    };
    EXPECT_EQ(page(0, 2), (std::vector<std::int64_t>{sessions[0], sessions[2]}));
    EXPECT_EQ(page(sessions[2], 2), (std::vector<std::int64_t>{sessions[3]}));
    EXPECT_TRUE(page(0, 0).empty());
}

TEST_P(TxnTest, AWriteJobReadsItsOwnChanges) {
    auto seen = write<bool>([](WriteTxn& txn) -> Result<bool> {
        if (auto u = txn.insert_user(make_user("@a:x")); !u) return u.error();
        auto found = txn.find_user("@a:x");
        if (!found) return found.error();
        return found->has_value();
    });
    EXPECT_TRUE(seen);
}

MYELIN_INSTANTIATE_ON_BACKENDS(TxnTest);

}  // namespace
}  // namespace myelin::storage
