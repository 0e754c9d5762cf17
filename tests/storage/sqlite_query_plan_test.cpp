// Query plans that keep rotation cost independent of a session's age: a session keeps every
// refresh token it ever had, so a statement that walks them all would slow down every refresh.

#include <string>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "myelin/storage/room_sql.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "storage_test_support.hpp"

namespace myelin::storage {
namespace {

std::string plan_of(sqlite3* db, const char* sql) {
    std::string plan;
    sqlite3_stmt* stmt = nullptr;
    std::string explain = std::string("EXPLAIN QUERY PLAN ") + sql;
    EXPECT_EQ(sqlite3_prepare_v2(db, explain.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
        plan += "\n";
    }
    sqlite3_finalize(stmt);
    return plan;
}

// A database file in a fresh folder with the current schema, opened directly with SQLite.
class MigratedFile {
public:
    MigratedFile() {
        const std::string path = dir_.file("hs.db");
        {
            auto db = open_sqlite(path);
            EXPECT_TRUE(db) << db.error().message;
            if (db) (*db)->close();
        }
        if (sqlite3_open(path.c_str(), &raw_) != SQLITE_OK) {
            ADD_FAILURE() << "cannot open " << path;
            sqlite3_close(raw_);
            raw_ = nullptr;
        }
    }
    ~MigratedFile() { sqlite3_close(raw_); }
    MigratedFile(const MigratedFile&) = delete;
    MigratedFile& operator=(const MigratedFile&) = delete;

    // The connection, or null if the file could not be opened (a failure is already recorded).
    sqlite3* raw() const { return raw_; }

private:
    testing::TempDir dir_;
    sqlite3* raw_ = nullptr;
};

TEST(SqliteQueryPlan, WipingSealedSuccessorsUsesThePartialIndex) {
    MigratedFile file;
    sqlite3* raw = file.raw();
    ASSERT_NE(raw, nullptr);
    // The statement the backend runs (sqlite_txn.cpp, kWipeSealedSuccessors).
    std::string plan = plan_of(raw,
                               "UPDATE refresh_tokens INDEXED BY refresh_tokens_sealed_by_session "
                               "SET sealed_successor = NULL WHERE session_id = 1 AND "
                               "sealed_successor IS NOT NULL");
    EXPECT_NE(plan.find("refresh_tokens_sealed_by_session"), std::string::npos) << plan;
}

// The revocation log only grows and the server polls it often: following it must seek to the
// last id seen, never scan the log.
TEST(SqliteQueryPlan, FollowingTheRevocationLogSeeksByItsId) {
    MigratedFile file;
    sqlite3* raw = file.raw();
    ASSERT_NE(raw, nullptr);
    // The statements the backend runs (sqlite_txn.cpp, kRevocationsSince, kLatestRevocationId).
    std::string plan =
        plan_of(raw,
                "SELECT r.id, r.session_id, COALESCE(s.user_id, ''), COALESCE(s.device_id, ''), "
                "r.reason, r.ts FROM revocation_log AS r LEFT JOIN sessions AS s ON "
                "s.session_id = r.session_id WHERE r.id > 5 ORDER BY r.id LIMIT 10");
    EXPECT_NE(plan.find("SEARCH r USING INTEGER PRIMARY KEY (rowid>?)"), std::string::npos) << plan;
    EXPECT_NE(plan.find("SEARCH s USING INTEGER PRIMARY KEY (rowid=?)"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    plan = plan_of(raw,
                   "SELECT MAX(COALESCE((SELECT MAX(id) FROM revocation_log), 0), "
                   "COALESCE((SELECT through_id FROM revocation_log_pruned WHERE id = 1), 0))");
    // "SCAN CONSTANT ROW" is the outer SELECT without a table; no table may be scanned.
    EXPECT_EQ(plan.find("SCAN revocation_log"), std::string::npos) << plan;
    EXPECT_NE(plan.find("SEARCH revocation_log_pruned USING INTEGER PRIMARY KEY"),
              std::string::npos)
        << plan;
}

// Housekeeping prunes by age, a batch at a time, from tables that hold months of rows: each
// prune must walk the ts index from its oldest end, never scan the table (migrations 4 and 5).
TEST(SqliteQueryPlan, PruningByAgeWalksTheTsIndexes) {
    MigratedFile file;
    sqlite3* raw = file.raw();
    ASSERT_NE(raw, nullptr);
    // The statements the backend runs (sqlite_txn.cpp, kPruneRevocationLog, kPruneSecurityEvents).
    std::string plan = plan_of(raw,
                               "DELETE FROM revocation_log WHERE id IN (SELECT id FROM "
                               "revocation_log WHERE ts < 5 ORDER BY ts LIMIT 10) RETURNING id");
    EXPECT_NE(plan.find("USING COVERING INDEX revocation_log_by_ts (ts<?)"), std::string::npos)
        << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
    plan = plan_of(raw,
                   "DELETE FROM security_events WHERE id IN (SELECT id FROM security_events "
                   "WHERE ts < 5 ORDER BY ts LIMIT 10)");
    EXPECT_NE(plan.find("USING COVERING INDEX security_events_by_ts (ts<?)"), std::string::npos)
        << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
    // Expired UIA sessions (migration 5; kPruneUiaSessions).
    plan = plan_of(raw,
                   "DELETE FROM uia_sessions WHERE session_id IN (SELECT session_id FROM "
                   "uia_sessions WHERE created_ts < 5 ORDER BY created_ts LIMIT 10) RETURNING "
                   "finished, registration_token");
    EXPECT_NE(plan.find("USING COVERING INDEX uia_sessions_by_created_ts (created_ts<?)"),
              std::string::npos)
        << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
}

// What /sync will ask (migration 8): the events of a room after a position, in both directions,
// and the membership changes of a user after a position. Both must seek through an index, never
// scan a table or sort, however many events the server holds.
TEST(SqliteQueryPlan, RoomEventsAndMembershipChangesSeekByPosition) {
    MigratedFile file;
    sqlite3* raw = file.raw();
    ASSERT_NE(raw, nullptr);
    for (const std::string_view sql :
         {room_sql::kRoomEventsForwards, room_sql::kRoomEventsBackwards,
          room_sql::kMembershipChangesSince}) {
        std::string plan = plan_of(raw, std::string(sql).c_str());
        EXPECT_EQ(plan.find("SCAN"), std::string::npos) << sql << "\n" << plan;
        EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << sql << "\n" << plan;
    }
    EXPECT_NE(plan_of(raw, std::string(room_sql::kRoomEventsForwards).c_str())
                  .find("events_by_room (room_id=? AND stream_ordering>? AND stream_ordering<?)"),
              std::string::npos);
    EXPECT_NE(plan_of(raw, std::string(room_sql::kMembershipChangesSince).c_str())
                  .find("room_memberships_by_user (user_id=? AND stream_ordering>?)"),
              std::string::npos);
}

// /sync's receipts of a room after a position (migration 9) seek through their index.
TEST(SqliteQueryPlan, RoomReceiptsSeekByPosition) {
    MigratedFile file;
    sqlite3* raw = file.raw();
    ASSERT_NE(raw, nullptr);
    std::string plan = plan_of(raw, std::string(room_sql::kRoomReceiptsSince).c_str());
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
    EXPECT_NE(plan.find("receipts_by_position (room_id=? AND stream_pos>?)"), std::string::npos)
        << plan;
}

}  // namespace
}  // namespace myelin::storage
