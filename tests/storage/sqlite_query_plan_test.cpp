// Query plans that keep rotation cost independent of a session's age: a session keeps every
// refresh token it ever had, so a statement that walks them all would slow down every refresh.

#include <sqlite3.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace myelin::storage
