// Query plans that keep rotation cost independent of a session's age: a session keeps every
// refresh token it ever had, so a statement that walks them all would slow down every refresh.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "myelin/storage/sqlite/sqlite_database.hpp"

namespace myelin::storage {
namespace {

namespace fs = std::filesystem;

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

TEST(SqliteQueryPlan, WipingSealedSuccessorsUsesThePartialIndex) {
    fs::path dir = fs::temp_directory_path() / ("myelin-plan-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    {
        auto db = open_sqlite((dir / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        (*db)->close();
    }
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "hs.db").string().c_str(), &raw), SQLITE_OK);
    // The statement the backend runs (sqlite_txn.cpp, kWipeSealedSuccessors).
    std::string plan = plan_of(raw,
                               "UPDATE refresh_tokens INDEXED BY refresh_tokens_sealed_by_session "
                               "SET sealed_successor = NULL WHERE session_id = 1 AND "
                               "sealed_successor IS NOT NULL");
    EXPECT_NE(plan.find("refresh_tokens_sealed_by_session"), std::string::npos) << plan;
    sqlite3_close(raw);
    fs::remove_all(dir);
}

// The revocation log only grows and the server polls it often: following it must seek to the
// last id seen, never scan the log.
TEST(SqliteQueryPlan, FollowingTheRevocationLogSeeksByItsId) {
    fs::path dir = fs::temp_directory_path() / ("myelin-plan-log-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    {
        auto db = open_sqlite((dir / "hs.db").string());
        ASSERT_TRUE(db) << db.error().message;
        (*db)->close();
    }
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "hs.db").string().c_str(), &raw), SQLITE_OK);
    // The statements the backend runs (sqlite_txn.cpp, kRevocationsSince, kLatestRevocationId).
    std::string plan =
        plan_of(raw,
                "SELECT r.id, r.session_id, COALESCE(s.user_id, ''), COALESCE(s.device_id, ''), "
                "r.reason, r.ts FROM revocation_log AS r LEFT JOIN sessions AS s ON "
                "s.session_id = r.session_id WHERE r.id > 5 ORDER BY r.id LIMIT 10");
    EXPECT_NE(plan.find("SEARCH r USING INTEGER PRIMARY KEY (rowid>?)"), std::string::npos) << plan;
    EXPECT_NE(plan.find("SEARCH s USING INTEGER PRIMARY KEY (rowid=?)"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    plan = plan_of(raw, "SELECT COALESCE(MAX(id), 0) FROM revocation_log");
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    sqlite3_close(raw);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace myelin::storage
