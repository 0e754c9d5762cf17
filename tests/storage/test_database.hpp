#pragma once

// A throwaway database of either backend for one test, so that the backend-neutral storage tests
// run against SQLite and PostgreSQL alike (value-parameterised on Backend):
//   SQLite      a file in a fresh temporary folder;
//   PostgreSQL  a fresh database on the cluster that MYELIN_TEST_POSTGRES_URL names (see
//               scripts/pg-test-cluster.sh), dropped at the end of the test.
// Without MYELIN_TEST_POSTGRES_URL a PostgreSQL test fails when CI=true and is skipped, loudly,
// elsewhere (MYELIN_REQUIRE_POSTGRES).

#include <cstdlib>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"
#include "myelin/storage/postgres/pg_database.hpp"

#include "storage_test_support.hpp"

namespace myelin::storage::testing {

enum class Backend { kSqlite, kPostgres };

// Prints a Backend in gtest messages.
inline void PrintTo(Backend backend, std::ostream* os) {
    *os << (backend == Backend::kSqlite ? "sqlite" : "postgres");
}

// "sqlite" / "postgres": the suffix of every parameterised test's name (filters use it).
std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info);

// The URL of the test cluster's maintenance database, or nullopt when not set.
std::optional<std::string> postgres_test_url();
// Whether a missing cluster must fail the test rather than skip it (CI=true).
bool running_in_ci();
// What a PostgreSQL test says when there is no cluster.
std::string missing_postgres_message();

// Skips (outside CI, with a loud message) or fails (in CI) the current test when there is no
// PostgreSQL cluster to test against. Use at the top of a test body or SetUp().
#define MYELIN_REQUIRE_POSTGRES()                                                           \
    do {                                                                                    \
        if (!::myelin::storage::testing::postgres_test_url()) {                             \
            if (::myelin::storage::testing::running_in_ci()) {                              \
                FAIL() << ::myelin::storage::testing::missing_postgres_message();           \
            }                                                                               \
            std::cerr << "\n*** " << ::myelin::storage::testing::missing_postgres_message() \
                      << " ***\n\n";                                                        \
            GTEST_SKIP() << ::myelin::storage::testing::missing_postgres_message();         \
        }                                                                                   \
    } while (false)

// A fresh PostgreSQL database on the test cluster, dropped (with its connections) on destruction.
class PostgresTestDatabase {
public:
    // Creates the database. Requires postgres_test_url(); adds a test failure if it cannot.
    PostgresTestDatabase();
    ~PostgresTestDatabase();
    PostgresTestDatabase(const PostgresTestDatabase&) = delete;
    PostgresTestDatabase& operator=(const PostgresTestDatabase&) = delete;

    // Options that open this database (pool of 4 and a short pool timeout unless changed).
    PostgresOptions options() const;
    const std::string& name() const { return name_; }
    // Runs `sql` on this database over a separate connection and returns the first column of
    // every row as text ("" for NULL). Adds a test failure on an error.
    std::vector<std::string> query(const std::string& sql) const;
    // Terminates every server process connected to this database other than the caller's;
    // returns how many were terminated. With an `application_name` (letters, digits and '-'
    // only), only the connections whose application_name ends with it.
    int terminate_connections(const std::string& application_name = {}) const;

private:
    PostgresOptions base_;
    std::string name_;
};

// One test's database of the given backend.
class TestDatabase {
public:
    explicit TestDatabase(Backend backend);

    Backend backend() const { return backend_; }
    // Opens a Database on this test's data (again: a reopen, or a second process's view).
    Result<std::unique_ptr<Database>> open() const;
    // The PostgreSQL database (only for Backend::kPostgres).
    PostgresTestDatabase& postgres() { return *postgres_; }

private:
    Backend backend_;
    std::unique_ptr<TempDir> dir_;                    // SQLite
    std::unique_ptr<PostgresTestDatabase> postgres_;  // PostgreSQL
};

// A fixture for tests that run on both backends: SetUp requires the cluster for PostgreSQL and
// opens db_.
class BackendTest : public ::testing::TestWithParam<Backend> {
protected:
    void SetUp() override;
    void TearDown() override;

    std::unique_ptr<TestDatabase> testdb_;
    std::unique_ptr<Database> db_;
};

#define MYELIN_INSTANTIATE_ON_BACKENDS(suite)                                                   \
    INSTANTIATE_TEST_SUITE_P(Backends, suite,                                                   \
                             ::testing::Values(::myelin::storage::testing::Backend::kSqlite,    \
                                               ::myelin::storage::testing::Backend::kPostgres), \
                             ::myelin::storage::testing::backend_param_name)

}  // namespace myelin::storage::testing
