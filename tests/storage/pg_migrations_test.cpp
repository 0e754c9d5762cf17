// Opening a PostgreSQL database: schema creation, idempotent reopen, refusal of newer schemas,
// upgrades from every older version, and processes that open a new database at the same time.

#include "myelin/storage/postgres/pg_migrations.hpp"

#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"
#include "myelin/storage/postgres/pg_database.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

#include "storage_test_support.hpp"
#include "test_database.hpp"
#include "upgrade_check.hpp"

namespace myelin::storage {
namespace {

using testing::PostgresTestDatabase;

std::string expected_versions() {
    std::string out;
    for (int v = 1; v <= postgres_schema_version(); ++v) {
        if (v > 1) out += ",";
        out += std::to_string(v);
    }
    return out;
}

class PostgresMigrations : public ::testing::Test {
protected:
    void SetUp() override {
        MYELIN_REQUIRE_POSTGRES();
        pgdb_ = std::make_unique<PostgresTestDatabase>();
    }
    std::unique_ptr<PostgresTestDatabase> pgdb_;
};

TEST_F(PostgresMigrations, CreateTheSchemaAndRecordTheVersion) {
    {
        auto db = open_postgres(pgdb_->options());
        ASSERT_TRUE(db) << db.error().message;
        EXPECT_EQ((*db)->backend_name(), "postgresql");
    }
    auto tables = pgdb_->query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
    std::set<std::string> names(tables.begin(), tables.end());
    for (const char* table : {"schema_version", "users", "devices", "sessions", "access_tokens",
                              "refresh_tokens", "security_events", "registration_tokens",
                              "revocation_log", "revocation_log_pruned", "uia_sessions"}) {
        EXPECT_TRUE(names.count(table)) << "missing table " << table;
    }
    auto indexes = pgdb_->query("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'");
    std::set<std::string> index_names(indexes.begin(), indexes.end());
    for (const char* index :
         {"sessions_by_user_device", "access_tokens_by_session", "refresh_tokens_by_session",
          "refresh_tokens_sealed_by_session", "security_events_by_user", "revocation_log_by_ts",
          "security_events_by_ts", "uia_sessions_by_created_ts"}) {
        EXPECT_TRUE(index_names.count(index)) << "missing index " << index;
    }
    EXPECT_EQ(pgdb_->query("SELECT string_agg(version::text, ',' ORDER BY version) "
                           "FROM schema_version"),
              std::vector<std::string>{expected_versions()});
    // The same numbers describe the same schema on both backends.
    EXPECT_EQ(postgres_schema_version(), sqlite_schema_version());
}

TEST_F(PostgresMigrations, ReopeningIsIdempotentAndKeepsData) {
    {
        auto db = open_postgres(pgdb_->options());
        ASSERT_TRUE(db) << db.error().message;
        auto inserted = write_sync<bool>(
            **db, [](WriteTxn& txn) { return txn.insert_user(testing::make_user("@a:x")); });
        ASSERT_TRUE(inserted && *inserted);
    }
    for (int i = 0; i < 2; ++i) {
        auto db = open_postgres(pgdb_->options());
        ASSERT_TRUE(db) << db.error().message;
        EXPECT_TRUE(testing::user_exists(**db, "@a:x"));
    }
    EXPECT_EQ(pgdb_->query("SELECT count(*) FROM schema_version"),
              std::vector<std::string>{std::to_string(postgres_schema_version())});
}

TEST_F(PostgresMigrations, RefuseADatabaseWithANewerSchema) {
    ASSERT_TRUE(open_postgres(pgdb_->options()));
    pgdb_->query("INSERT INTO schema_version (version, applied_ts) VALUES (" +
                 std::to_string(postgres_schema_version() + 1) + ", 0)");
    auto db = open_postgres(pgdb_->options());
    ASSERT_FALSE(db);
    EXPECT_EQ(db.error().message,
              "database schema version " + std::to_string(postgres_schema_version() + 1) +
                  " is newer than this myelin build supports (" +
                  std::to_string(postgres_schema_version()) + "); upgrade myelin");
    EXPECT_EQ(db.error().errcode, "M_UNKNOWN");
    EXPECT_EQ(db.error().status, 500);
}

TEST_F(PostgresMigrations, ProcessesOpeningANewDatabaseTogetherMigrateItOnce) {
    constexpr int kOpeners = 4;
    std::vector<std::thread> openers;
    std::vector<std::string> failures(kOpeners);
    for (int i = 0; i < kOpeners; ++i) {
        openers.emplace_back([&, i] {
            auto options = pgdb_->options();
            options.pool_size = 1;
            auto db = open_postgres(options);
            if (!db) failures[static_cast<std::size_t>(i)] = db.error().message;
        });
    }
    for (auto& t : openers) t.join();
    for (const auto& f : failures) EXPECT_EQ(f, "");
    EXPECT_EQ(pgdb_->query("SELECT string_agg(version::text, ',' ORDER BY version) "
                           "FROM schema_version"),
              std::vector<std::string>{expected_versions()});
}

TEST_F(PostgresMigrations, UpgradeFromEveryOlderVersionKeepsTheData) {
    ASSERT_GE(postgres_schema_version(), 3);
    for (int version = 1; version < postgres_schema_version(); ++version) {
        SCOPED_TRACE("from version " + std::to_string(version));
        PostgresTestDatabase old;
        old.query(
            "CREATE TABLE schema_version (version BIGINT PRIMARY KEY, "
            "applied_ts BIGINT NOT NULL)");
        for (const auto& m : pg::migrations()) {
            if (m.version > version) break;
            old.query(m.sql);
            old.query("INSERT INTO schema_version VALUES (" + std::to_string(m.version) + ", 1)");
        }
        old.query(
            "INSERT INTO users (user_id, password_hash, created_ts) VALUES ('@old:x', 'h', 10)");
        old.query(
            "INSERT INTO sessions (user_id, device_id, created_ts) "
            "VALUES ('@old:x', 'OLD', 12)");
        old.query(
            "INSERT INTO access_tokens (token_hash, session_id, generation, issued_ts) "
            "VALUES (decode(repeat('00', 32), 'hex'), 1, 0, 13)");

        auto db = open_postgres(old.options());
        ASSERT_TRUE(db) << db.error().message;
        testing::expect_old_rows_and_new_tables(**db);
        (*db)->close();
        EXPECT_EQ(old.query("SELECT string_agg(version::text, ',' ORDER BY version) "
                            "FROM schema_version"),
                  std::vector<std::string>{expected_versions()});
    }
}

// Migration 4 (pruning) on a database a v3 release wrote, with log rows already in it: the ts
// indexes and the pruned-through mark appear, old rows can be pruned, and the newest log id
// still counts the pruned entries.
TEST_F(PostgresMigrations, UpgradeFromVersion3PrunesExistingLogRows) {
    ASSERT_GE(postgres_schema_version(), 4);
    pgdb_->query(
        "CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied_ts BIGINT NOT NULL)");
    for (const auto& m : pg::migrations()) {
        if (m.version > 3) break;
        pgdb_->query(m.sql);
        pgdb_->query("INSERT INTO schema_version VALUES (" + std::to_string(m.version) + ", 1)");
    }
    pgdb_->query(
        "INSERT INTO security_events (user_id, ts, kind) VALUES "
        "('@old:x', 100, 'login'), ('@old:x', 900, 'login')");
    // A fresh identity: these are log ids 1 and 2.
    pgdb_->query(
        "INSERT INTO revocation_log (session_id, reason, ts) VALUES (1, 4, 100), (1, 4, 900)");
    {
        auto db = open_postgres(pgdb_->options());
        ASSERT_TRUE(db) << db.error().message;
        testing::expect_old_log_rows_prunable(**db);
    }
    EXPECT_EQ(pgdb_->query("SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON "
                           "n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname IN "
                           "('revocation_log_by_ts', 'security_events_by_ts', "
                           "'revocation_log_pruned') ORDER BY c.relname COLLATE \"C\""),
              (std::vector<std::string>{"revocation_log_by_ts", "revocation_log_pruned",
                                        "security_events_by_ts"}));
    EXPECT_EQ(pgdb_->query("SELECT MAX(version) FROM schema_version"),
              std::vector<std::string>{std::to_string(postgres_schema_version())});
}

}  // namespace
}  // namespace myelin::storage
