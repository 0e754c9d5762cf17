// Opening an SQLite database: schema creation, idempotent reopen, refusal of newer schemas and of
// files that are not databases.

#include <fstream>
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include "myelin/storage/await.hpp"
#include "myelin/storage/sqlite/migrations.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "storage_test_support.hpp"
#include "upgrade_check.hpp"

namespace myelin::storage {
namespace {

using testing::TempDir;

// Runs `sql` on its own connection (outside myelin) and returns the first column of each row.
std::vector<std::string> query_column(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    std::vector<std::string> out;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        ADD_FAILURE() << "cannot open " << path;
        sqlite3_close(db);
        return out;
    }
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
        const auto* text = sqlite3_column_text(stmt, 0);
        out.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return out;
}

TEST(SqliteMigrations, CreateTheSchemaAndRecordTheVersion) {
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    {
        auto db = open_sqlite(path);
        ASSERT_TRUE(db) << db.error().message;
        EXPECT_EQ((*db)->backend_name(), "sqlite");
    }
    auto tables = query_column(path, "SELECT name FROM sqlite_master WHERE type = 'table'");
    std::set<std::string> names(tables.begin(), tables.end());
    for (const char* table :
         {"schema_version", "users", "devices", "sessions", "access_tokens", "refresh_tokens",
          "security_events", "registration_tokens", "revocation_log", "uia_sessions"}) {
        EXPECT_TRUE(names.count(table)) << "missing table " << table;
    }
    auto indexes = query_column(path, "SELECT name FROM sqlite_master WHERE type = 'index'");
    std::set<std::string> index_names(indexes.begin(), indexes.end());
    for (const char* index :
         {"sessions_by_user_device", "access_tokens_by_session", "refresh_tokens_by_session",
          "security_events_by_user", "uia_sessions_by_created_ts"}) {
        EXPECT_TRUE(index_names.count(index)) << "missing index " << index;
    }
    // One row per applied migration: 1, 2, ... up to the build's version.
    std::string expected_versions;
    for (int v = 1; v <= sqlite_schema_version(); ++v) {
        if (v > 1) expected_versions += ",";
        expected_versions += std::to_string(v);
    }
    EXPECT_EQ(query_column(path, "SELECT group_concat(version) FROM schema_version"),
              std::vector<std::string>{expected_versions});
    EXPECT_EQ(query_column(path, "PRAGMA journal_mode"), std::vector<std::string>{"wal"});
    EXPECT_GE(sqlite_schema_version(), 1);
}

TEST(SqliteMigrations, ReopeningIsIdempotentAndKeepsData) {
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    {
        auto db = open_sqlite(path);
        ASSERT_TRUE(db) << db.error().message;
        auto inserted = write_sync<bool>(
            **db, [](WriteTxn& txn) { return txn.insert_user(testing::make_user("@a:x")); });
        ASSERT_TRUE(inserted && *inserted);
    }
    for (int i = 0; i < 2; ++i) {
        auto db = open_sqlite(path);
        ASSERT_TRUE(db) << db.error().message;
        auto user = read_sync<std::optional<UserRecord>>(
            **db, [](ReadTxn& txn) { return txn.find_user("@a:x"); });
        ASSERT_TRUE(user);
        EXPECT_TRUE(user->has_value());
    }
    // Each migration is recorded once, however often the file is opened.
    EXPECT_EQ(query_column(path, "SELECT count(*) FROM schema_version"),
              std::vector<std::string>{std::to_string(sqlite_schema_version())});
}

TEST(SqliteMigrations, RefuseADatabaseWithANewerSchema) {
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    ASSERT_TRUE(open_sqlite(path));
    query_column(path, "INSERT INTO schema_version (version, applied_ts) VALUES (" +
                           std::to_string(sqlite_schema_version() + 1) + ", 0)");

    auto db = open_sqlite(path);
    ASSERT_FALSE(db);
    EXPECT_EQ(db.error().message,
              "database schema version " + std::to_string(sqlite_schema_version() + 1) +
                  " is newer than this myelin build supports (" +
                  std::to_string(sqlite_schema_version()) + "); upgrade myelin");
    EXPECT_EQ(db.error().errcode, "M_UNKNOWN");
    EXPECT_TRUE(db.error().status == 500 || db.error().status == 503);
}

TEST(SqliteMigrations, RefuseAFileThatIsNotADatabase) {
    TempDir dir;
    const std::string path = dir.file("not-a-db");
    std::ofstream(path) << "this is a text file, not SQLite, and long enough to have a header...";
    auto db = open_sqlite(path);
    ASSERT_FALSE(db);
    EXPECT_NE(db.error().message.find("cannot open database"), std::string::npos)
        << db.error().message;
    EXPECT_NE(db.error().message.find("not a database"), std::string::npos) << db.error().message;
}

TEST(SqliteMigrations, ReportAMissingParentFolder) {
    TempDir dir;
    auto db = open_sqlite(dir.file("no/such/folder/myelin.db"));
    ASSERT_FALSE(db);
    EXPECT_EQ(db.error().status, 503);
    EXPECT_NE(db.error().message.find("no/such/folder/myelin.db"), std::string::npos)
        << db.error().message;
}

// Writes the schema as it was at `version` (migrations 1..version, recorded as a release of
// that time would) into a new file, with some rows in it, using SQLite directly.
void create_old_database(const std::string& path, int version) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    auto exec = [db](const std::string& sql) {
        char* message = nullptr;
        EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message), SQLITE_OK)
            << (message != nullptr ? message : "") << " in " << sql;
        sqlite3_free(message);
    };
    exec("PRAGMA journal_mode = WAL");
    exec(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY NOT NULL, "
        "applied_ts INTEGER NOT NULL) STRICT");
    for (const auto& m : sqlite::migrations()) {
        if (m.version > version) break;
        exec(m.sql);
        exec("INSERT INTO schema_version (version, applied_ts) VALUES (" +
             std::to_string(m.version) + ", 1)");
    }
    exec("INSERT INTO users (user_id, password_hash, created_ts) VALUES ('@old:x', 'h', 10)");
    exec(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts) "
        "VALUES ('@old:x', 'OLD', 'Old phone', 11)");
    exec("INSERT INTO sessions (user_id, device_id, created_ts) VALUES ('@old:x', 'OLD', 12)");
    exec(
        "INSERT INTO access_tokens (token_hash, session_id, generation, issued_ts) "
        "VALUES (zeroblob(32), 1, 0, 13)");
    sqlite3_close(db);
}

TEST(SqliteMigrations, UpgradeFromEveryOlderVersionKeepsTheData) {
    ASSERT_GE(sqlite_schema_version(), 3);  // registration tokens and the revocation log
    for (int version = 1; version < sqlite_schema_version(); ++version) {
        SCOPED_TRACE("from version " + std::to_string(version));
        TempDir dir;
        const std::string path = dir.file("myelin.db");
        create_old_database(path, version);
        ASSERT_EQ(query_column(path, "SELECT MAX(version) FROM schema_version"),
                  std::vector<std::string>{std::to_string(version)});
        {
            auto db = open_sqlite(path);
            ASSERT_TRUE(db) << db.error().message;
            auto user = read_sync<std::optional<UserRecord>>(
                **db, [](ReadTxn& txn) { return txn.find_user("@old:x"); });
            ASSERT_TRUE(user && user->has_value());
            EXPECT_EQ((*user)->password_hash, "h");
            auto device = read_sync<std::optional<DeviceRecord>>(
                **db, [](ReadTxn& txn) { return txn.find_device("@old:x", "OLD"); });
            ASSERT_TRUE(device && device->has_value());
            EXPECT_EQ((*device)->display_name, std::optional<std::string>("Old phone"));
            testing::expect_old_rows_and_new_tables(**db);
        }
        std::string expected_versions;
        for (int v = 1; v <= sqlite_schema_version(); ++v) {
            if (v > 1) expected_versions += ",";
            expected_versions += std::to_string(v);
        }
        EXPECT_EQ(query_column(path, "SELECT group_concat(version) FROM schema_version"),
                  std::vector<std::string>{expected_versions});
    }
}

// Migration 4 (pruning) on a database a v3 release wrote, with log rows already in it: the ts
// indexes and the pruned-through mark appear, old rows can be pruned, and the newest log id
// still counts the pruned entries.
TEST(SqliteMigrations, UpgradeFromVersion3PrunesExistingLogRows) {
    ASSERT_GE(sqlite_schema_version(), 4);
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    create_old_database(path, 3);
    query_column(path,
                 "INSERT INTO security_events (user_id, ts, kind) VALUES "
                 "('@old:x', 100, 'login'), ('@old:x', 900, 'login')");
    query_column(path,
                 "INSERT INTO revocation_log (session_id, reason, ts) VALUES (1, 4, 100), "
                 "(1, 4, 900)");
    {
        auto db = open_sqlite(path);
        ASSERT_TRUE(db) << db.error().message;
        testing::expect_old_log_rows_prunable(**db);
    }
    EXPECT_EQ(query_column(path,
                           "SELECT name FROM sqlite_master WHERE name IN ('revocation_log_by_ts', "
                           "'security_events_by_ts', 'revocation_log_pruned') ORDER BY name"),
              (std::vector<std::string>{"revocation_log_by_ts", "revocation_log_pruned",
                                        "security_events_by_ts"}));
    EXPECT_EQ(query_column(path, "SELECT MAX(version) FROM schema_version"),
              std::vector<std::string>{std::to_string(sqlite_schema_version())});
}

TEST(SqliteMigrations, NewTablesAreStrict) {
    TempDir dir;
    const std::string path = dir.file("myelin.db");
    ASSERT_TRUE(open_sqlite(path));
    auto strict = query_column(path,
                               "SELECT name FROM pragma_table_list WHERE strict = 1 AND name IN "
                               "('registration_tokens', 'revocation_log', "
                               "'revocation_log_pruned', 'uia_sessions') ORDER BY name");
    EXPECT_EQ(strict, (std::vector<std::string>{"registration_tokens", "revocation_log",
                                                "revocation_log_pruned", "uia_sessions"}));
    // uses_allowed stays NULL-able: NULL is "unlimited", distinct from 0.
    query_column(path,
                 "INSERT INTO registration_tokens (token, uses_allowed, created_ts) "
                 "VALUES ('t', NULL, 1)");
    EXPECT_EQ(query_column(path, "SELECT uses_allowed IS NULL FROM registration_tokens"),
              std::vector<std::string>{"1"});
}

TEST(SqliteMigrations, RejectInvalidOptions) {
    TempDir dir;
    SqliteOptions options;
    options.reader_threads = 0;
    EXPECT_FALSE(open_sqlite(dir.file("a.db"), options));
    options.reader_threads = 1;
    options.max_batch = 0;
    EXPECT_FALSE(open_sqlite(dir.file("b.db"), options));
}

}  // namespace
}  // namespace myelin::storage
