#include "myelin/app/open_database.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "myelin/storage/postgres/pg_database.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

namespace myelin::app {

namespace {

Result<std::unique_ptr<storage::Database>> open_configured_postgres(const DatabaseConfig& config,
                                                                    DatabaseUser user) {
    storage::PostgresOptions options;
    options.host = config.postgres.host;
    options.port = config.postgres.port;
    options.user = config.postgres.user;
    options.password = config.postgres.password;
    options.dbname = config.postgres.dbname;
    options.synchronous_commit = config.synchronous_commit;
    options.pool_timeout = config.pool_timeout;
    const int pool = static_cast<int>(config.pool_size);
    options.pool_size = user == DatabaseUser::kServer ? pool : std::min(pool, 2);
    options.application_name = user == DatabaseUser::kServer ? "myelin" : "myelin-admin";
    return storage::open_postgres(options);
}

Result<std::unique_ptr<storage::Database>> open_configured_sqlite(const DatabaseConfig& config,
                                                                  DatabaseUser user) {
    const auto dir = config.sqlite_path.parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
        std::filesystem::create_directories(dir, ec);
        if (ec) {
            return errors::internal("cannot create data folder '" + dir.string() +
                                    "': " + ec.message());
        }
        ::chmod(dir.c_str(), 0700);
    }
    storage::SqliteOptions options;
    options.reader_threads =
        user == DatabaseUser::kServer ? static_cast<int>(config.reader_threads) : 1;
    return storage::open_sqlite(config.sqlite_path.string(), options);
}

}  // namespace

Result<std::unique_ptr<storage::Database>> open_database(const DatabaseConfig& config,
                                                         DatabaseUser user) {
    if (config.is_postgres) return open_configured_postgres(config, user);
    return open_configured_sqlite(config, user);
}

}  // namespace myelin::app
