#include "test_database.hpp"

#include <unistd.h>

#include <atomic>
#include <iostream>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "myelin/core/postgres_url.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

namespace myelin::storage::testing {

namespace {

// A libpq connection for the test's own statements (outside myelin).
class RawConnection {
public:
    RawConnection(const PostgresOptions& o, const std::string& dbname) {
        const std::string port = std::to_string(o.port);
        const char* keywords[] = {"host", "port", "user", "password", "dbname", nullptr};
        const char* values[] = {o.host.c_str(), port.c_str(),
                                o.user.c_str(), o.password.empty() ? nullptr : o.password.c_str(),
                                dbname.c_str(), nullptr};
        conn_ = PQconnectdbParams(keywords, values, 0);
        if (PQstatus(conn_) != CONNECTION_OK) {
            ADD_FAILURE() << "cannot connect to the test cluster: " << PQerrorMessage(conn_);
        }
        PQsetNoticeProcessor(
            conn_, [](void*, const char*) {}, nullptr);
    }
    ~RawConnection() { PQfinish(conn_); }
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;

    std::vector<std::string> query(const std::string& sql) {
        std::vector<std::string> out;
        PGresult* r = PQexec(conn_, sql.c_str());
        const auto status = PQresultStatus(r);
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
            ADD_FAILURE() << sql << ": " << PQerrorMessage(conn_);
        } else if (status == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(r); ++i) out.emplace_back(PQgetvalue(r, i, 0));
        }
        PQclear(r);
        return out;
    }

private:
    PGconn* conn_;
};

PostgresOptions options_from_url(const std::string& url) {
    PostgresOptions o;
    auto parsed = parse_postgres_url(url);
    if (!parsed) {
        ADD_FAILURE() << "MYELIN_TEST_POSTGRES_URL: " << parsed.error().message;
        return o;
    }
    o.host = parsed->host;
    o.port = parsed->port;
    o.user = parsed->user;
    o.password = parsed->password;
    o.dbname = parsed->dbname;
    o.pool_size = 4;
    o.pool_timeout = std::chrono::seconds(10);
    o.application_name = "myelin-test";
    return o;
}

}  // namespace

std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info) {
    return info.param == Backend::kSqlite ? "sqlite" : "postgres";
}

std::optional<std::string> postgres_test_url() {
    const char* url = std::getenv("MYELIN_TEST_POSTGRES_URL");
    if (url == nullptr || *url == '\0') return std::nullopt;
    return std::string(url);
}

bool running_in_ci() {
    const char* ci = std::getenv("CI");
    return ci != nullptr && std::string(ci) == "true";
}

std::string missing_postgres_message() {
    return "PostgreSQL test NOT RUN: MYELIN_TEST_POSTGRES_URL is not set. Run the tests through "
           "scripts/pg-test-cluster.sh (ctest label 'postgres' does), e.g. "
           "scripts/pg-test-cluster.sh build/tests/myelin_storage_tests";
}

PostgresTestDatabase::PostgresTestDatabase() {
    static std::atomic<int> counter{0};
    base_ = options_from_url(postgres_test_url().value_or(""));
    name_ = fmt::format("myelin_test_{}_{}", ::getpid(), counter.fetch_add(1));
    RawConnection admin(base_, base_.dbname);
    admin.query("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    admin.query("CREATE DATABASE " + name_);
}

PostgresTestDatabase::~PostgresTestDatabase() {
    RawConnection admin(base_, base_.dbname);
    admin.query("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
}

PostgresOptions PostgresTestDatabase::options() const {
    PostgresOptions o = base_;
    o.dbname = name_;
    return o;
}

std::vector<std::string> PostgresTestDatabase::query(const std::string& sql) const {
    RawConnection conn(base_, name_);
    return conn.query(sql);
}

int PostgresTestDatabase::terminate_connections(const std::string& application_name) const {
    std::string sql =
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()";
    if (!application_name.empty()) sql += " AND application_name LIKE '%" + application_name + "'";
    auto killed = query(sql);
    return killed.empty() ? 0 : std::stoi(killed[0]);
}

TestDatabase::TestDatabase(Backend backend) : backend_(backend) {
    if (backend == Backend::kSqlite) {
        dir_ = std::make_unique<TempDir>();
    } else {
        postgres_ = std::make_unique<PostgresTestDatabase>();
    }
}

Result<std::unique_ptr<Database>> TestDatabase::open() const {
    if (backend_ == Backend::kSqlite) return open_sqlite(dir_->file("myelin.db"));
    return open_postgres(postgres_->options());
}

void BackendTest::SetUp() {
    if (GetParam() == Backend::kPostgres) MYELIN_REQUIRE_POSTGRES();
    testdb_ = std::make_unique<TestDatabase>(GetParam());
    auto opened = testdb_->open();
    ASSERT_TRUE(opened) << opened.error().message;
    db_ = std::move(*opened);
}

void BackendTest::TearDown() {
    if (db_) db_->close();
    db_.reset();
    testdb_.reset();
}

}  // namespace myelin::storage::testing
