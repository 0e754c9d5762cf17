// The storage of what clients write right after login (migration 7), on every backend: account
// data and its per-user stream positions, filters, profiles, device keys, one-time and fallback
// keys (each one-time key claimed once), device-list changes and to-device messages with their
// transaction IDs. Positions never repeat, also after the rows that held them are deleted.

#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"

#include "test_database.hpp"

namespace myelin::storage {
namespace {

class ClientDataTest : public testing::BackendTest {
protected:
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

    std::int64_t put_data(const std::string& user, const std::string& room, const std::string& type,
                          const std::string& content) {
        return write<std::int64_t>(
            [&](WriteTxn& txn) { return txn.put_account_data(user, room, type, content); });
    }
    std::optional<AccountDataRecord> find_data(const std::string& user, const std::string& room,
                                               const std::string& type) {
        return read<std::optional<AccountDataRecord>>(
            [&](ReadTxn& txn) { return txn.find_account_data(user, room, type); });
    }
    std::vector<AccountDataRecord> data_since(const std::string& user, std::int64_t pos,
                                              int limit) {
        return read<std::vector<AccountDataRecord>>(
            [&](ReadTxn& txn) { return txn.account_data_since(user, pos, limit); });
    }
    std::int64_t position(const std::string& scope, const std::string& stream) {
        return read<std::int64_t>([&](ReadTxn& txn) { return txn.stream_position(scope, stream); });
    }
    bool insert_otk(const std::string& device, const std::string& alg, const std::string& id,
                    const std::string& json) {
        return write<bool>([&](WriteTxn& txn) {
            return txn.insert_one_time_key({"@a:x", device, alg, id, json});
        });
    }
    std::optional<E2eKeyRecord> claim(const std::string& device, const std::string& alg) {
        return write<std::optional<E2eKeyRecord>>(
            [&](WriteTxn& txn) { return txn.claim_one_time_key("@a:x", device, alg); });
    }
    std::optional<E2eKeyRecord> claim_fallback(const std::string& device, const std::string& alg) {
        return write<std::optional<E2eKeyRecord>>(
            [&](WriteTxn& txn) { return txn.claim_fallback_key("@a:x", device, alg); });
    }
    std::vector<std::pair<std::string, std::int64_t>> counts(const std::string& device) {
        return read<std::vector<std::pair<std::string, std::int64_t>>>(
            [&](ReadTxn& txn) { return txn.count_one_time_keys("@a:x", device); });
    }
};

using Counts = std::vector<std::pair<std::string, std::int64_t>>;

TEST_P(ClientDataTest, AccountDataRoundTripsAndEveryWriteTakesTheUsersNextPosition) {
    EXPECT_FALSE(find_data("@a:x", "", "m.direct"));
    EXPECT_EQ(position("@a:x", "account_data"), 0);

    EXPECT_EQ(put_data("@a:x", "", "m.direct", R"({"v":1})"), 1);
    EXPECT_EQ(put_data("@a:x", "!r:x", "m.tag", R"({"t":1})"), 2);
    EXPECT_EQ(put_data("@b:x", "", "m.direct", R"({"b":1})"), 1);  // per user
    EXPECT_EQ(put_data("@a:x", "", "m.direct", R"({"v":2})"), 3);  // replaced: a new position

    auto got = find_data("@a:x", "", "m.direct");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->content, R"({"v":2})");
    EXPECT_EQ(got->stream_pos, 3);
    EXPECT_EQ(got->room_id, "");
    auto room = find_data("@a:x", "!r:x", "m.tag");
    ASSERT_TRUE(room);
    EXPECT_EQ(room->content, R"({"t":1})");
    EXPECT_FALSE(find_data("@a:x", "!other:x", "m.tag"));
    EXPECT_FALSE(find_data("@a:x", "!r:x", "m.direct"));  // global and room data are apart
    EXPECT_EQ(position("@a:x", "account_data"), 3);
    EXPECT_EQ(position("@b:x", "account_data"), 1);

    auto all = data_since("@a:x", 0, 10);
    ASSERT_EQ(all.size(), 2u);  // the replaced entry once, at its new position
    EXPECT_EQ(all[0].type, "m.tag");
    EXPECT_EQ(all[0].stream_pos, 2);
    EXPECT_EQ(all[1].type, "m.direct");
    EXPECT_EQ(all[1].stream_pos, 3);
    EXPECT_EQ(data_since("@a:x", 2, 10).size(), 1u);
    EXPECT_EQ(data_since("@a:x", 0, 1).size(), 1u);
    EXPECT_TRUE(data_since("@a:x", 0, 0).empty());
    EXPECT_TRUE(data_since("@a:x", 0, -1).empty());
    EXPECT_TRUE(data_since("@a:x", 3, 10).empty());
}

TEST_P(ClientDataTest, FiltersAreNumberedPerUserFromZero) {
    auto insert = [&](const std::string& user, const std::string& json) {
        return write<std::int64_t>([&](WriteTxn& txn) { return txn.insert_filter(user, json); });
    };
    EXPECT_EQ(insert("@a:x", R"({"room":{}})"), 0);
    EXPECT_EQ(insert("@a:x", R"({"presence":{}})"), 1);
    EXPECT_EQ(insert("@b:x", "{}"), 0);
    auto find = [&](const std::string& user, std::int64_t id) {
        return read<std::optional<std::string>>(
            [&](ReadTxn& txn) { return txn.find_filter(user, id); });
    };
    EXPECT_EQ(find("@a:x", 0), R"({"room":{}})");
    EXPECT_EQ(find("@a:x", 1), R"({"presence":{}})");
    EXPECT_EQ(find("@b:x", 0), "{}");
    EXPECT_FALSE(find("@b:x", 1));
    EXPECT_FALSE(find("@c:x", 0));
}

TEST_P(ClientDataTest, ProfilesAreUpsertedWithOptionalFields) {
    auto find = [&] {
        return read<std::optional<ProfileRecord>>(
            [&](ReadTxn& txn) { return txn.find_profile("@a:x"); });
    };
    EXPECT_FALSE(find());
    write<void>([&](WriteTxn& txn) {
        return txn.upsert_profile({"@a:x", std::string("Alice"), std::nullopt});
    });
    auto got = find();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->displayname, "Alice");
    EXPECT_FALSE(got->avatar_url);
    write<void>([&](WriteTxn& txn) {
        return txn.upsert_profile({"@a:x", std::nullopt, std::string("mxc://x/y")});
    });
    got = find();
    ASSERT_TRUE(got);
    EXPECT_FALSE(got->displayname);
    EXPECT_EQ(got->avatar_url, "mxc://x/y");
}

TEST_P(ClientDataTest, DeviceKeysAreKeptPerDeviceAndGoWithTheDevice) {
    write<void>([&](WriteTxn& txn) { return txn.upsert_device_keys({"@a:x", "B", R"({"b":1})"}); });
    write<void>([&](WriteTxn& txn) { return txn.upsert_device_keys({"@a:x", "A", R"({"a":1})"}); });
    write<void>([&](WriteTxn& txn) { return txn.upsert_device_keys({"@a:x", "A", R"({"a":2})"}); });
    auto list = [&](std::optional<std::string_view> device) {
        return read<std::vector<DeviceKeysRecord>>(
            [&](ReadTxn& txn) { return txn.list_device_keys("@a:x", device); });
    };
    auto all = list(std::nullopt);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].device_id, "A");
    EXPECT_EQ(all[0].key_json, R"({"a":2})");
    EXPECT_EQ(all[1].device_id, "B");
    ASSERT_EQ(list("B").size(), 1u);
    EXPECT_TRUE(list("C").empty());

    EXPECT_TRUE(insert_otk("A", "signed_curve25519", "k1", "\"x\""));
    write<void>([&](WriteTxn& txn) {
        return txn.upsert_fallback_key({"@a:x", "A", "signed_curve25519", "f1", "\"f\""});
    });
    write<void>([&](WriteTxn& txn) { return txn.delete_device_e2e_keys("@a:x", "A"); });
    ASSERT_EQ(list(std::nullopt).size(), 1u);
    EXPECT_TRUE(counts("A").empty());
    EXPECT_FALSE(claim_fallback("A", "signed_curve25519"));
}

TEST_P(ClientDataTest, OneTimeKeysAreCountedAndEachIsClaimedOnce) {
    EXPECT_TRUE(insert_otk("A", "signed_curve25519", "k2", R"({"key":"two"})"));
    EXPECT_TRUE(insert_otk("A", "signed_curve25519", "k1", R"({"key":"one"})"));
    EXPECT_TRUE(insert_otk("A", "curve25519", "k1", "\"plain\""));
    EXPECT_FALSE(insert_otk("A", "signed_curve25519", "k1", R"({"key":"other"})"));
    EXPECT_TRUE(insert_otk("B", "signed_curve25519", "k1", R"({"key":"b"})"));
    EXPECT_EQ(counts("A"), (Counts{{"curve25519", 1}, {"signed_curve25519", 2}}));

    auto first = claim("A", "signed_curve25519");
    ASSERT_TRUE(first);
    EXPECT_EQ(first->key_id, "k1");
    EXPECT_EQ(first->key_json, R"({"key":"one"})");  // the duplicate upload changed nothing
    EXPECT_EQ(first->algorithm, "signed_curve25519");
    auto second = claim("A", "signed_curve25519");
    ASSERT_TRUE(second);
    EXPECT_EQ(second->key_id, "k2");
    EXPECT_FALSE(claim("A", "signed_curve25519"));
    EXPECT_EQ(counts("A"), (Counts{{"curve25519", 1}}));
    EXPECT_EQ(counts("B"), (Counts{{"signed_curve25519", 1}}));
}

TEST_P(ClientDataTest, ConcurrentClaimsOnTwoOpensGetDifferentKeys) {
    constexpr int kKeys = 20;
    for (int i = 0; i < kKeys; ++i) {
        ASSERT_TRUE(insert_otk("A", "alg", "k" + std::to_string(100 + i), "\"v\""));
    }
    auto other = testdb_->open();
    ASSERT_TRUE(other) << other.error().message;
    std::vector<std::string> got[2];
    auto claimer = [&](Database& db, std::vector<std::string>& out) {
        for (int i = 0; i < kKeys; ++i) {
            auto r = write_sync<std::optional<E2eKeyRecord>>(
                db, [](WriteTxn& txn) { return txn.claim_one_time_key("@a:x", "A", "alg"); });
            if (r && *r) out.push_back((*r)->key_id);
        }
    };
    std::thread t1([&] { claimer(*db_, got[0]); });
    std::thread t2([&] { claimer(**other, got[1]); });
    t1.join();
    t2.join();
    std::set<std::string> all(got[0].begin(), got[0].end());
    all.insert(got[1].begin(), got[1].end());
    EXPECT_EQ(got[0].size() + got[1].size(), static_cast<std::size_t>(kKeys));
    EXPECT_EQ(all.size(), static_cast<std::size_t>(kKeys));  // nobody got a key twice
    (*other)->close();
}

TEST_P(ClientDataTest, FallbackKeysStayWhenClaimedUntilReplaced) {
    auto unused = [&] {
        return read<std::vector<std::string>>(
            [&](ReadTxn& txn) { return txn.unused_fallback_key_algorithms("@a:x", "A"); });
    };
    EXPECT_FALSE(claim_fallback("A", "signed_curve25519"));
    write<void>([&](WriteTxn& txn) {
        return txn.upsert_fallback_key({"@a:x", "A", "signed_curve25519", "f1", "\"one\""});
    });
    EXPECT_EQ(unused(), std::vector<std::string>{"signed_curve25519"});
    auto got = claim_fallback("A", "signed_curve25519");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->key_id, "f1");
    EXPECT_TRUE(unused().empty());
    got = claim_fallback("A", "signed_curve25519");  // still there, used again
    ASSERT_TRUE(got);
    EXPECT_EQ(got->key_json, "\"one\"");
    write<void>([&](WriteTxn& txn) {
        return txn.upsert_fallback_key({"@a:x", "A", "signed_curve25519", "f2", "\"two\""});
    });
    EXPECT_EQ(unused(), std::vector<std::string>{"signed_curve25519"});
    got = claim_fallback("A", "signed_curve25519");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->key_id, "f2");
}

TEST_P(ClientDataTest, DeviceListChangesTakeGlobalPositions) {
    auto record = [&](const std::string& user, const std::string& device) {
        return write<std::int64_t>(
            [&](WriteTxn& txn) { return txn.record_device_list_change(user, device); });
    };
    EXPECT_EQ(record("@a:x", "A"), 1);
    EXPECT_EQ(record("@b:x", "B"), 2);
    EXPECT_EQ(record("@a:x", "C"), 3);
    EXPECT_EQ(position("", "device_lists"), 3);
    auto since = read<std::vector<DeviceListChangeRecord>>(
        [&](ReadTxn& txn) { return txn.device_list_changes_since(1, 10); });
    ASSERT_EQ(since.size(), 2u);
    EXPECT_EQ(since[0].stream_pos, 2);
    EXPECT_EQ(since[0].user_id, "@b:x");
    EXPECT_EQ(since[1].device_id, "C");
}

TEST_P(ClientDataTest, ToDeviceMessagesQueuePerDeviceAndPositionsNeverRepeat) {
    auto txn_fresh = [&](const std::string& device, const std::string& txn_id) {
        return write<bool>(
            [&](WriteTxn& txn) { return txn.insert_to_device_txn("@s:x", device, txn_id, 5); });
    };
    EXPECT_TRUE(txn_fresh("S", "t1"));
    EXPECT_FALSE(txn_fresh("S", "t1"));
    EXPECT_TRUE(txn_fresh("T", "t1"));  // per sending device

    auto send = [&](const std::string& device, const std::string& content) {
        ToDeviceRecord m;
        m.recipient_user = "@r:x";
        m.recipient_device = device;
        m.sender = "@s:x";
        m.type = "m.room_key_request";
        m.content = content;
        return write<std::int64_t>([&](WriteTxn& txn) { return txn.insert_to_device(m); });
    };
    EXPECT_EQ(send("A", R"({"n":1})"), 1);
    EXPECT_EQ(send("B", R"({"n":2})"), 2);
    EXPECT_EQ(send("A", R"({"n":3})"), 3);
    auto since = [&](const std::string& device, std::int64_t pos) {
        return read<std::vector<ToDeviceRecord>>(
            [&](ReadTxn& txn) { return txn.to_device_since("@r:x", device, pos, 100); });
    };
    auto a = since("A", 0);
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[0].stream_pos, 1);
    EXPECT_EQ(a[0].content, R"({"n":1})");
    EXPECT_EQ(a[0].sender, "@s:x");
    EXPECT_EQ(a[0].type, "m.room_key_request");
    EXPECT_EQ(a[1].stream_pos, 3);
    EXPECT_EQ(since("A", 1).size(), 1u);
    EXPECT_EQ(since("B", 0).size(), 1u);

    EXPECT_EQ(write<std::int64_t>(
                  [&](WriteTxn& txn) { return txn.delete_to_device_through("@r:x", "A", 3); }),
              2);
    EXPECT_TRUE(since("A", 0).empty());
    EXPECT_EQ(since("B", 0).size(), 1u);    // other devices keep theirs
    EXPECT_EQ(send("A", R"({"n":4})"), 4);  // not 1 again after the delete
    EXPECT_EQ(position("@r:x", "to_device"), 4);
}

TEST_P(ClientDataTest, PruningSupersededDeviceListChangesKeepsEveryAnswerTheSame) {
    auto record = [&](const std::string& user, const std::string& device) {
        return write<std::int64_t>(
            [&](WriteTxn& txn) { return txn.record_device_list_change(user, device); });
    };
    // a/A changes three times, b/B once, a/C twice; interleaved.
    for (auto [user, device] : std::vector<std::pair<std::string, std::string>>{{"@a:x", "A"},
                                                                                {"@b:x", "B"},
                                                                                {"@a:x", "A"},
                                                                                {"@a:x", "C"},
                                                                                {"@a:x", "A"},
                                                                                {"@a:x", "C"}}) {
        record(user, device);
    }
    // The users changed after each position, as a set.
    auto users_after = [&](std::int64_t pos) {
        std::set<std::string> users;
        for (const auto& c : read<std::vector<DeviceListChangeRecord>>(
                 [&](ReadTxn& txn) { return txn.device_list_changes_since(pos, 100); })) {
            users.insert(c.user_id + "/" + c.device_id);
        }
        return users;
    };
    std::vector<std::set<std::string>> before;
    for (std::int64_t pos = 0; pos <= 6; ++pos) before.push_back(users_after(pos));

    // Batches of 2: rows 1, 3 (a/A) and 4 (a/C) are superseded; 2, 5, 6 are the newest.
    EXPECT_EQ(write<std::int64_t>(
                  [](WriteTxn& txn) { return txn.prune_superseded_device_list_changes(2); }),
              2);
    EXPECT_EQ(write<std::int64_t>(
                  [](WriteTxn& txn) { return txn.prune_superseded_device_list_changes(2); }),
              1);
    EXPECT_EQ(write<std::int64_t>(
                  [](WriteTxn& txn) { return txn.prune_superseded_device_list_changes(2); }),
              0);
    EXPECT_EQ(write<std::int64_t>(
                  [](WriteTxn& txn) { return txn.prune_superseded_device_list_changes(0); }),
              0);
    auto left = read<std::vector<DeviceListChangeRecord>>(
        [&](ReadTxn& txn) { return txn.device_list_changes_since(0, 100); });
    ASSERT_EQ(left.size(), 3u);
    EXPECT_EQ(left[0].stream_pos, 2);
    EXPECT_EQ(left[1].stream_pos, 5);
    EXPECT_EQ(left[2].stream_pos, 6);
    for (std::int64_t pos = 0; pos <= 6; ++pos) {
        EXPECT_EQ(users_after(pos), before[static_cast<std::size_t>(pos)]) << "after " << pos;
    }
    EXPECT_EQ(record("@b:x", "B"), 7);  // positions go on from the newest, pruned or not
}

TEST_P(ClientDataTest, OldToDeviceTransactionsArePrunedOldestFirstAndCanBeReused) {
    auto txn_fresh = [&](const std::string& txn_id, std::int64_t ts) {
        return write<bool>(
            [&](WriteTxn& txn) { return txn.insert_to_device_txn("@s:x", "S", txn_id, ts); });
    };
    EXPECT_TRUE(txn_fresh("t1", 10));
    EXPECT_TRUE(txn_fresh("t2", 30));
    EXPECT_TRUE(txn_fresh("t3", 20));
    EXPECT_TRUE(txn_fresh("t4", 40));
    auto prune = [&](std::int64_t before, int limit) {
        return write<std::int64_t>(
            [&](WriteTxn& txn) { return txn.prune_to_device_txns(before, limit); });
    };
    EXPECT_EQ(prune(40, 0), 0);
    EXPECT_EQ(prune(40, 2), 2);         // t1 (10) and t3 (20), the oldest
    EXPECT_FALSE(txn_fresh("t2", 50));  // kept: still recognised as a retry
    EXPECT_TRUE(txn_fresh("t1", 50));   // pruned: a new transaction now
    EXPECT_TRUE(txn_fresh("t3", 50));
    EXPECT_EQ(prune(40, 10), 1);  // t2 (30); t4 at 40 is not before 40
    EXPECT_FALSE(txn_fresh("t4", 60));
}

TEST_P(ClientDataTest, CrossSigningKeysAreOnePerUserAndType) {
    auto put = [&](const std::string& user, const std::string& type, const std::string& pub,
                   const std::string& json) {
        write<void>([&](WriteTxn& txn) {
            return txn.upsert_cross_signing_key({user, type, pub, json});
        });
    };
    auto list = [&](const std::string& user) {
        return read<std::vector<CrossSigningKeyRecord>>(
            [&](ReadTxn& txn) { return txn.list_cross_signing_keys(user); });
    };
    put("@a:x", "self_signing", "S1", R"({"s":1})");
    put("@a:x", "master", "M1", R"({"m":1})");
    put("@b:x", "master", "BM", R"({"b":1})");
    put("@a:x", "master", "M2", R"({"m":2})");  // replaces M1
    auto a = list("@a:x");
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[0].key_type, "master");
    EXPECT_EQ(a[0].public_key, "M2");
    EXPECT_EQ(a[0].key_json, R"({"m":2})");
    EXPECT_EQ(a[1].key_type, "self_signing");
    EXPECT_EQ(a[1].public_key, "S1");
    EXPECT_EQ(list("@b:x").size(), 1u);
    EXPECT_TRUE(list("@c:x").empty());
}

TEST_P(ClientDataTest, KeySignaturesAreKeptPerTargetAndSignerAndGoWithTheDevice) {
    auto sign = [&](const std::string& target_key, const std::string& signer,
                    const std::string& signer_key, const std::string& sig) {
        write<void>([&](WriteTxn& txn) {
            return txn.upsert_key_signature({"@a:x", target_key, signer, signer_key, sig});
        });
    };
    auto list = [&](const std::string& user) {
        return read<std::vector<KeySignatureRecord>>(
            [&](ReadTxn& txn) { return txn.list_key_signatures(user); });
    };
    write<void>([&](WriteTxn& txn) { return txn.upsert_device_keys({"@a:x", "DEV", "{}"}); });
    sign("MASTER", "@b:x", "ed25519:BUSK", "s1");
    sign("DEV", "@a:x", "ed25519:SSK", "s2");
    sign("DEV", "@a:x", "ed25519:SSK", "s3");  // replaces s2
    sign("OTHER", "@a:x", "ed25519:SSK", "s4");
    auto all = list("@a:x");
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].target_key, "DEV");
    EXPECT_EQ(all[0].signature, "s3");
    EXPECT_EQ(all[1].target_key, "MASTER");
    EXPECT_EQ(all[1].signer_user, "@b:x");
    EXPECT_EQ(all[1].signer_key_id, "ed25519:BUSK");
    EXPECT_EQ(all[2].target_key, "OTHER");
    EXPECT_TRUE(list("@b:x").empty());

    write<void>([&](WriteTxn& txn) { return txn.delete_key_signatures("@a:x", "OTHER"); });
    EXPECT_EQ(list("@a:x").size(), 2u);
    // Deleting the device's keys takes the signatures of its keys along, not the others.
    write<void>([&](WriteTxn& txn) { return txn.delete_device_e2e_keys("@a:x", "DEV"); });
    all = list("@a:x");
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].target_key, "MASTER");
}

MYELIN_INSTANTIATE_ON_BACKENDS(ClientDataTest);

}  // namespace
}  // namespace myelin::storage
