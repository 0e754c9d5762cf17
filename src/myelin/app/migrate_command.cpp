#include "myelin/app/migrate_command.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string_view>
#include <system_error>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "myelin/core/postgres_url.hpp"
#include "myelin/storage/transfer/sqlite_to_postgres.hpp"

namespace myelin::app {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

namespace bj = boost::json;

void fail(const std::string& message) {
    std::cerr << "myelin admin migrate-sqlite-to-postgres: " << message << "\n";
}

// The first line of the password file; nullopt after printing why it cannot be used. The
// message names the file, never its content.
std::optional<std::string> read_password_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string password;
    if (!in || !std::getline(in, password)) {
        fail("--password-file '" + path + "' cannot be read");
        return std::nullopt;
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
        fail("the first line of --password-file '" + path + "' is empty");
        return std::nullopt;
    }
    return password;
}

// Where the SQLite server kept its key file unless [secrets] key_file said otherwise.
std::filesystem::path default_sqlite_key_file(const std::string& sqlite_path) {
    return std::filesystem::path(sqlite_path).parent_path() / "myelin.key";
}

std::string key_file_reminder(const std::string& sqlite_path) {
    const auto key = default_sqlite_key_file(sqlite_path);
    std::error_code ec;
    const bool found = std::filesystem::exists(key, ec);
    const std::string where =
        found ? fmt::format("here that is probably '{}' (beside the SQLite file)", key.string())
              : "by default myelin.key beside the SQLite file";
    return fmt::format(
        "The server secret is not in the database. Every server on the PostgreSQL database must "
        "use the same key file the SQLite server used ({}, unless its config set [secrets] "
        "key_file), or every access and refresh token stops working. With a postgresql:// url "
        "the server reads [secrets] key_file, or, when that is empty, myelin.key beside its "
        "config file: copy the key there (mode 0600, owned by the server's user) or point "
        "key_file at it.",
        where);
}

void print_text(const MigrateArgs& args, const PostgresUrl& url,
                const storage::transfer::TransferReport& report) {
    std::cout << "Copied " << args.from << " into " << url.redacted() << " (schema version "
              << report.schema_version << "):\n";
    std::cout << fmt::format("  {:<24} {:>12}  {}\n", "table", "rows", "checksum");
    for (const auto& t : report.tables) {
        if (!t.copied) {
            std::cout << fmt::format("  {:<24} {:>12}  skipped: {}\n", t.name, "-", t.skip_reason);
            continue;
        }
        std::string line = fmt::format("  {:<24} {:>12}  {:016x}", t.name, t.rows, t.checksum);
        if (t.next_id) line += fmt::format("  (new ids from {})", *t.next_id);
        std::cout << line << "\n";
    }
    std::cout << "Every copied table was read back: row counts and checksums match the SQLite "
                 "database.\n\n"
              << key_file_reminder(args.from) << "\n";
}

void print_json(const MigrateArgs& args, const PostgresUrl& url,
                const storage::transfer::TransferReport& report) {
    bj::array tables;
    for (const auto& t : report.tables) {
        bj::object o{{"name", t.name}, {"copied", t.copied}};
        if (t.copied) {
            o["rows"] = t.rows;
            o["checksum"] = fmt::format("{:016x}", t.checksum);
            if (t.next_id) o["next_id"] = *t.next_id;
        } else {
            o["skipped"] = t.skip_reason;
        }
        tables.push_back(std::move(o));
    }
    bj::object out{{"from", args.from},
                   {"to", url.redacted()},
                   {"schema_version", report.schema_version},
                   {"tables", std::move(tables)},
                   {"verified", true},
                   {"key_file_reminder", key_file_reminder(args.from)}};
    std::cout << bj::serialize(out) << "\n";
}

}  // namespace

int run_migrate(const MigrateArgs& args_in) {
    MigrateArgs args = args_in;
    if (args.from.starts_with("sqlite:")) args.from.erase(0, 7);
    if (!args.to.starts_with("postgresql://") && !args.to.starts_with("postgres://")) {
        fail("--to: expected a postgresql://user@host[:port]/db URL, got '" +
             redact_postgres_url(args.to) + "'");
        return kExitUsage;
    }
    auto url = parse_postgres_url(args.to);
    if (!url) {
        fail("--to: " + url.error().message);
        return kExitUsage;
    }
    if (!args.password_file.empty()) {
        if (!url->password.empty()) {
            fail("both the --to URL and --password-file give a password; give only one");
            return kExitUsage;
        }
        auto password = read_password_file(args.password_file);
        if (!password) return kExitUsage;
        url->password = std::move(*password);
    }

    storage::transfer::SqliteToPostgresOptions options;
    options.sqlite_path = args.from;
    options.target.host = url->host;
    options.target.port = url->port;
    options.target.user = url->user;
    options.target.password = url->password;
    options.target.dbname = url->dbname;
    options.target.application_name = "myelin-migrate";
    options.progress = [](std::string_view line) { std::cerr << line << " ...\n"; };
    auto report = storage::transfer::copy_sqlite_to_postgres(options);
    if (!report) {
        fail(report.error().message);
        return kExitFailure;
    }
    if (args.json) {
        print_json(args, *url, *report);
    } else {
        print_text(args, *url, *report);
    }
    return kExitOk;
}

}  // namespace myelin::app
