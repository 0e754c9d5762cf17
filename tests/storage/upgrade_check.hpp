#pragma once

// The check both backends' upgrade tests run on a database migrated from an older schema that
// held the session 1 of "@old:x" with an access token whose hash is all zero bytes: the old rows
// are still found, and the tables of later migrations work (registration tokens, the revocation
// log, UIA sessions).
//
// expect_old_log_rows_prunable: for a database upgraded from version 3 that held the security
// events of "@old:x" at ts 100 and 900 and revocation log entries 1 (ts 100) and 2 (ts 900):
// pruning before ts 500 removes the old row of each, the pruned-through mark is 1, and the newest
// log id still counts the pruned entry (migration 4).

#include <optional>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::storage::testing {

inline void expect_old_rows_and_new_tables(Database& db) {
    auto token = read_sync<std::optional<AccessTokenLookup>>(
        db, [](ReadTxn& txn) { return txn.find_access_token(TokenHash{}); });
    ASSERT_TRUE(token && token->has_value());
    EXPECT_EQ((*token)->session.user_id, "@old:x");

    auto revoked = write_sync<void>(db, [](WriteTxn& txn) -> Result<void> {
        RegistrationTokenRecord t;
        t.token = "new";
        t.created_ts = 20;
        if (auto r = txn.insert_registration_token(t); !r) return r.error();
        return txn.revoke_session(1, 21, RevokeReason::kAdmin);
    });
    ASSERT_TRUE(revoked) << revoked.error().message;
    auto log = read_sync<std::vector<RevocationRecord>>(
        db, [](ReadTxn& txn) { return txn.revocations_since(0, 10); });
    ASSERT_TRUE(log);
    ASSERT_EQ(log->size(), 1u);
    EXPECT_EQ((*log)[0].user_id, "@old:x");

    auto uia = write_sync<std::optional<UiaSessionRecord>>(
        db, [](WriteTxn& txn) -> Result<std::optional<UiaSessionRecord>> {
            UiaSessionRecord s;
            s.session_id = "upgraded";
            s.endpoint = "POST /register";
            s.flows = {{"m.login.dummy"}};
            s.registration = true;
            s.created_ts = 30;
            if (auto r = txn.insert_uia_session(s); !r) return r.error();
            return txn.finish_uia_session("upgraded", 0);
        });
    ASSERT_TRUE(uia) << uia.error().message;
    ASSERT_TRUE(uia->has_value());
    EXPECT_TRUE((*uia)->finished);
}

inline void expect_old_log_rows_prunable(Database& db) {
    auto deleted = write_sync<std::int64_t>(db, [](WriteTxn& txn) -> Result<std::int64_t> {
        auto events = txn.prune_security_events(500, 10);
        if (!events) return events.error();
        auto log = txn.prune_revocation_log(500, 10);
        if (!log) return log.error();
        return *events + *log;
    });
    ASSERT_TRUE(deleted) << deleted.error().message;
    EXPECT_EQ(*deleted, 2);
    auto events = read_sync<std::vector<SecurityEventRecord>>(
        db, [](ReadTxn& txn) { return txn.security_events("@old:x", 10); });
    ASSERT_TRUE(events);
    ASSERT_EQ(events->size(), 1u);
    EXPECT_EQ((*events)[0].ts, 900);
    auto pruned = read_sync<std::int64_t>(
        db, [](ReadTxn& txn) { return txn.revocation_log_pruned_through(); });
    ASSERT_TRUE(pruned);
    EXPECT_EQ(*pruned, 1);
    auto latest =
        read_sync<std::int64_t>(db, [](ReadTxn& txn) { return txn.latest_revocation_id(); });
    ASSERT_TRUE(latest);
    EXPECT_EQ(*latest, 2);
}

}  // namespace myelin::storage::testing
