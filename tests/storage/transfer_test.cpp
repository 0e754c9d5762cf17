// The SQLite to PostgreSQL copy (`myelin admin migrate-sqlite-to-postgres`): its table list
// against the tables the migrations create, a database filled through the storage API copied and
// read back through the PostgreSQL backend, and every refusal leaving the target as it was.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "myelin/storage/await.hpp"
#include "myelin/storage/postgres/pg_database.hpp"
#include "myelin/storage/sqlite/connection.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"
#include "myelin/storage/transfer/sqlite_to_postgres.hpp"
#include "myelin/storage/transfer/table_rules.hpp"

#include "storage_test_support.hpp"
#include "test_database.hpp"

namespace myelin::storage {
namespace {

using testing::make_device;
using testing::make_session;
using testing::make_user;
using testing::PostgresTestDatabase;
using testing::TempDir;
using transfer::copy_sqlite_to_postgres;
using transfer::SqliteToPostgresOptions;
using transfer::table_rules;
using transfer::TableHandling;

std::set<std::string> rule_names() {
    std::set<std::string> names;
    for (const auto& rule : table_rules()) names.emplace(rule.name);
    return names;
}

// Runs `sql` on the SQLite file over a connection of its own (outside the backend).
void sqlite_exec(const std::string& path, const char* sql) {
    auto conn = sqlite::Connection::open(path, {});
    ASSERT_TRUE(conn) << conn.error().message;
    auto done = (*conn)->exec_script(sql);
    ASSERT_TRUE(done) << done.error().message;
}

std::set<std::string> sqlite_table_names(const std::string& path) {
    std::set<std::string> names;
    auto conn = sqlite::Connection::open(path, {});
    EXPECT_TRUE(conn);
    if (!conn) return names;
    auto stmt = (*conn)->prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\'");
    EXPECT_TRUE(stmt);
    while (stmt) {
        auto row = (*stmt)->step();
        if (!row || !*row) break;
        names.insert((*stmt)->column_text(0));
    }
    return names;
}

pg::ConnectionSettings settings_of(const PostgresOptions& o) {
    pg::ConnectionSettings s = connection_settings(o);
    s.application_name = "myelin-test-transfer";
    return s;
}

// A SQLite database created by the backend itself (every migration applied), then closed.
std::string fresh_sqlite(const TempDir& dir) {
    const std::string path = dir.file("homeserver.db");
    auto db = open_sqlite(path);
    EXPECT_TRUE(db) << (db ? "" : db.error().message);
    if (db) (*db)->close();
    return path;
}

// ---- The table list -------------------------------------------------------------------------

TEST(TransferTables, CoverExactlyTheTablesOfAFreshSqliteDatabase) {
    TempDir dir;
    const std::string path = fresh_sqlite(dir);
    EXPECT_EQ(sqlite_table_names(path), rule_names())
        << "a migration added or removed a table: give it a line in "
           "src/myelin/storage/transfer/table_rules.cpp (copy, or skip with the reason)";
}

TEST(TransferTables, EverySkippedTableSaysWhyAndNoTableIsListedTwice) {
    std::set<std::string> seen;
    for (const auto& rule : table_rules()) {
        EXPECT_TRUE(seen.emplace(rule.name).second) << rule.name << " is listed twice";
        EXPECT_EQ(rule.handling == TableHandling::kSkip, !rule.reason.empty()) << rule.name;
    }
}

TEST(TransferTables, RefuseAMissingSqliteFile) {
    TempDir dir;
    SqliteToPostgresOptions options;
    options.sqlite_path = dir.file("nothing-here.db");
    options.target.host = "127.0.0.1";
    options.target.port = 1;  // never contacted
    auto copied = copy_sqlite_to_postgres(options);
    ASSERT_FALSE(copied);
    EXPECT_NE(copied.error().message.find("no SQLite database file"), std::string::npos)
        << copied.error().message;
    EXPECT_FALSE(std::filesystem::exists(options.sqlite_path)) << "it must not create the file";
}

// ---- Copies against the test cluster ------------------------------------------------------

std::vector<std::uint8_t> bytes_of(std::initializer_list<int> values, std::size_t pad,
                                   std::uint8_t seed) {
    std::vector<std::uint8_t> out;
    for (int v : values) out.push_back(static_cast<std::uint8_t>(v));
    for (std::size_t i = 0; i < pad; ++i) out.push_back(static_cast<std::uint8_t>(seed + i * 37));
    return out;
}

// A distinct 32-byte hash per (kind, index) with zero and 0xff bytes in it.
TokenHash hash_of(std::uint8_t kind, int index) {
    TokenHash h{};
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::uint8_t>(i * 41 + index);
    h[0] = kind;
    h[1] = static_cast<std::uint8_t>(index & 0xff);
    h[2] = static_cast<std::uint8_t>(index >> 8);
    h[3] = 0x00;
    h[4] = 0xff;
    return h;
}

std::string hex(std::span<const std::uint8_t> bytes) {
    std::string out;
    for (auto b : bytes) out += fmt::format("{:02x}", b);
    return out;
}

std::string session_line(const SessionRecord& s) {
    return fmt::format("session {} {} {} r={} g={} c={} e={} cur={} used={} rev={}/{}",
                       s.session_id, s.user_id, s.device_id, s.refreshable, s.is_guest,
                       s.created_ts, s.ends_ts, s.current_generation, s.used_generation,
                       s.revoked_ts, static_cast<int>(s.revoked_reason));
}

constexpr int kSessions = 300;
const char* const kUsers[] = {"@alice:example.org", "@bob:example.org", "@guest1:example.org",
                              "@zoë:example.org"};

// Fills a database through the storage API with every kind of row; returns the ids of the
// sessions it made.
// A row in every table of migration 7 (issue #8 §1), some positions consumed by deleted rows.
Result<void> fill_client_data(WriteTxn& txn) {
    const std::string alice = kUsers[0];
    if (auto r = txn.put_account_data(alice, "", "m.direct", R"({"a":[1,"é"]})"); !r) {
        return r.error();
    }
    if (auto r = txn.put_account_data(alice, "!room:example.org", "m.tag", "{}"); !r) {
        return r.error();
    }
    if (auto r = txn.insert_filter(alice, R"({"room":{}})"); !r) return r.error();
    if (auto r = txn.upsert_profile({alice, std::string("Alice"), std::nullopt}); !r) {
        return r.error();
    }
    if (auto r = txn.upsert_device_keys({alice, "LAPTOP", R"({"keys":{}})"}); !r) return r.error();
    if (auto r = txn.insert_one_time_key({alice, "LAPTOP", "signed_curve25519", "k1", "\"v\""});
        !r) {
        return r.error();
    }
    if (auto r = txn.upsert_fallback_key({alice, "LAPTOP", "signed_curve25519", "f", "\"f\""});
        !r) {
        return r.error();
    }
    if (auto r = txn.claim_fallback_key(alice, "LAPTOP", "signed_curve25519"); !r) {
        return r.error();
    }
    if (auto r = txn.record_device_list_change(alice, "LAPTOP"); !r) return r.error();
    if (auto r = txn.insert_to_device_txn(alice, "LAPTOP", "t1", 77); !r) return r.error();
    ToDeviceRecord message{0, alice, "LAPTOP", kUsers[1], "m.x", R"({"n":1})"};
    for (int i = 0; i < 3; ++i) {
        if (auto r = txn.insert_to_device(message); !r) return r.error();
    }
    if (auto r = txn.delete_to_device_through(alice, "LAPTOP", 2); !r) return r.error();
    // Cross-signing (migration 10).
    if (auto r = txn.upsert_cross_signing_key({alice, "master", "MPUB", R"({"usage":["master"]})"});
        !r) {
        return r.error();
    }
    if (auto r = txn.upsert_key_signature({alice, "LAPTOP", alice, "ed25519:SPUB", "sig"}); !r) {
        return r.error();
    }
    return {};
}

// What the storage API reads of fill_client_data's rows, as text lines.
Result<void> read_client_data(ReadTxn& txn, std::vector<std::string>& lines) {
    const std::string alice = kUsers[0];
    auto data = txn.account_data_since(alice, 0, 100);
    if (!data) return data.error();
    for (const auto& d : *data) {
        lines.push_back(fmt::format("account_data {} [{}] {} {} {}", d.user_id, d.room_id, d.type,
                                    d.content, d.stream_pos));
    }
    auto filter = txn.find_filter(alice, 0);
    if (!filter) return filter.error();
    lines.push_back("filter " + filter->value_or("<none>"));
    auto profile = txn.find_profile(alice);
    if (!profile) return profile.error();
    if (*profile) {
        lines.push_back(fmt::format("profile {} {} {}", (*profile)->user_id,
                                    (*profile)->displayname.value_or("<null>"),
                                    (*profile)->avatar_url.value_or("<null>")));
    }
    auto keys = txn.list_device_keys(alice, std::nullopt);
    if (!keys) return keys.error();
    for (const auto& k : *keys) lines.push_back("device_keys " + k.device_id + " " + k.key_json);
    auto counts = txn.count_one_time_keys(alice, "LAPTOP");
    if (!counts) return counts.error();
    for (const auto& [alg, n] : *counts) lines.push_back(fmt::format("otk {} {}", alg, n));
    auto unused = txn.unused_fallback_key_algorithms(alice, "LAPTOP");
    if (!unused) return unused.error();
    lines.push_back(fmt::format("unused fallback {}", unused->size()));
    auto changes = txn.device_list_changes_since(0, 100);
    if (!changes) return changes.error();
    for (const auto& c : *changes) {
        lines.push_back(fmt::format("device_list {} {} {}", c.stream_pos, c.user_id, c.device_id));
    }
    auto xs_keys = txn.list_cross_signing_keys(alice);
    if (!xs_keys) return xs_keys.error();
    for (const auto& k : *xs_keys) {
        lines.push_back(
            fmt::format("cross_signing {} {} {}", k.key_type, k.public_key, k.key_json));
    }
    auto sigs = txn.list_key_signatures(alice);
    if (!sigs) return sigs.error();
    for (const auto& g : *sigs) {
        lines.push_back(fmt::format("signature {} {} {} {}", g.target_key, g.signer_user,
                                    g.signer_key_id, g.signature));
    }
    auto messages = txn.to_device_since(alice, "LAPTOP", 0, 100);
    if (!messages) return messages.error();
    for (const auto& m : *messages) {
        lines.push_back(
            fmt::format("to_device {} {} {} {}", m.stream_pos, m.sender, m.type, m.content));
    }
    for (const auto& [scope, stream] : {std::pair<std::string, std::string>{alice, "account_data"},
                                        {alice, "to_device"},
                                        {"", "device_lists"}}) {
        auto pos = txn.stream_position(scope, stream);
        if (!pos) return pos.error();
        lines.push_back(fmt::format("position [{}] {} {}", scope, stream, *pos));
    }
    return {};
}

std::vector<std::int64_t> fill(Database& db) {
    std::vector<std::int64_t> ids;
    auto filled = write_sync<bool>(db, [&](WriteTxn& txn) -> Result<bool> {
        for (const char* id : kUsers) {
            auto user = make_user(id, 1234);
            user.is_guest = std::string(id).find("guest") != std::string::npos;
            if (auto r = txn.insert_user(user); !r) return r.error();
        }
        if (auto r = txn.set_user_admin(kUsers[0], true); !r) return r.error();
        if (auto r = txn.set_user_deactivated(kUsers[1], true); !r) return r.error();
        auto phone = make_device(kUsers[0], "PHONE");
        phone.display_name = "Zoë's \"phone\" ☎";
        if (auto r = txn.ensure_device(phone); !r) return r.error();
        auto laptop = make_device(kUsers[0], "LAPTOP");
        laptop.display_name = std::nullopt;
        if (auto r = txn.ensure_device(laptop); !r) return r.error();
        if (auto r = txn.ensure_device(make_device(kUsers[3], "D")); !r) return r.error();
        if (auto r = txn.record_device_activity(kUsers[0], "PHONE", 777'000, "2001:db8::1"); !r) {
            return r.error();
        }
        for (int i = 0; i < kSessions; ++i) {
            auto session = make_session(i % 2 ? kUsers[3] : kUsers[0], i % 2 ? "D" : "PHONE");
            session.created_ts = 10'000 + i;
            session.is_guest = i % 7 == 0;
            auto id = txn.insert_session(session);
            if (!id) return id.error();
            ids.push_back(*id);
            AccessTokenRecord at;
            at.token_hash = hash_of(0xa0, i);
            at.session_id = *id;
            at.issued_ts = 20'000 + i;
            at.expires_ts = i % 3 ? 9'000'000'000'000 : 0;
            if (auto r = txn.insert_access_token(at); !r) return r.error();
            RefreshTokenRecord rt;
            rt.token_hash = hash_of(0xb0, i);
            rt.session_id = *id;
            rt.issued_ts = 20'000 + i;
            if (auto r = txn.insert_refresh_token(rt); !r) return r.error();
            if (i % 5 == 0) {
                // A rotation: generation 1 minted, its pair sealed on the old refresh token.
                if (auto r = txn.update_session_generations(*id, 0, 1, 0); !r) return r.error();
                RefreshTokenRecord next = rt;
                next.token_hash = hash_of(0xc0, i);
                next.generation = 1;
                if (auto r = txn.insert_refresh_token(next); !r) return r.error();
                if (auto r = txn.set_sealed_successor(rt.token_hash,
                                                      bytes_of({0x00, 0xff, 0x00, 0x5c, 0x27}, 100,
                                                               static_cast<std::uint8_t>(i)));
                    !r) {
                    return r.error();
                }
            }
        }
        for (int i = 0; i < 6; ++i) {
            SecurityEventRecord e;
            e.user_id = kUsers[i % 2 ? 3 : 0];
            e.device_id = i % 2 ? "D" : "";
            // The last one is the oldest by ts: pruning it leaves the highest id unused.
            e.ts = i == 5 ? 5 : 100 * (i + 1);
            e.kind = "login";
            e.detail = fmt::format("event {} with 'quotes' and \\ and ✓", i);
            if (auto r = txn.insert_security_event(e); !r) return r.error();
        }
        RegistrationTokenRecord limited;
        limited.token = "Spring-2027";
        limited.uses_allowed = 5;
        limited.expiry_ts = 8'000'000;
        limited.created_ts = 1000;
        if (auto r = txn.insert_registration_token(limited); !r) return r.error();
        if (auto r = txn.update_registration_token_counts("Spring-2027", 1, 2); !r) {
            return r.error();
        }
        RegistrationTokenRecord open;
        open.token = "open";
        open.created_ts = 1001;
        if (auto r = txn.insert_registration_token(open); !r) return r.error();
        if (auto r = fill_client_data(txn); !r) return r.error();
        return true;
    });
    EXPECT_TRUE(filled) << (filled ? "" : filled.error().message);
    // Revocations (one job each, as in service code), then pruning: the revocation log and the
    // security events keep a highest id that is no longer in their tables.
    for (int i = 0; i < 4; ++i) {
        auto revoked = write_sync<bool>(db, [&](WriteTxn& txn) -> Result<bool> {
            auto r = txn.revoke_session(ids[static_cast<std::size_t>(i)], 50'000 + i,
                                        i % 2 ? RevokeReason::kAdmin : RevokeReason::kLogout);
            if (!r) return r.error();
            return true;
        });
        EXPECT_TRUE(revoked);
    }
    auto pruned = write_sync<bool>(db, [&](WriteTxn& txn) -> Result<bool> {
        if (auto r = txn.prune_revocation_log(50'002, 10); !r) return r.error();  // ids 1, 2
        if (auto r = txn.prune_security_events(50, 10); !r) return r.error();     // the last id
        return true;
    });
    EXPECT_TRUE(pruned);
    return ids;
}

// Everything the storage API can read about the filled data, as text lines.
std::vector<std::string> read_everything(Database& db, const std::vector<std::int64_t>& ids) {
    std::vector<std::string> lines;
    auto read = read_sync<bool>(db, [&](ReadTxn& txn) -> Result<bool> {
        for (const char* id : kUsers) {
            auto u = txn.find_user(id);
            if (!u) return u.error();
            if (!*u) return errors::internal(fmt::format("user {} is missing", id));
            lines.push_back(fmt::format("user {} {} {} {} {} {}", (*u)->user_id,
                                        (*u)->password_hash, (*u)->is_guest, (*u)->is_admin,
                                        (*u)->deactivated, (*u)->created_ts));
            auto devices = txn.list_devices(id);
            if (!devices) return devices.error();
            for (const auto& d : *devices) {
                lines.push_back(fmt::format("device {} {} [{}] {} {} {} {}", d.user_id, d.device_id,
                                            d.display_name.value_or("<null>"),
                                            d.display_name.has_value(), d.created_ts,
                                            d.last_seen_ts, d.last_seen_ip));
            }
            auto events = txn.security_events(id, 1000);
            if (!events) return events.error();
            for (const auto& e : *events) {
                lines.push_back(fmt::format("event {} {} {} {} {} {}", e.id, e.user_id, e.device_id,
                                            e.ts, e.kind, e.detail));
            }
        }
        for (std::size_t i = 0; i < ids.size(); ++i) {
            auto s = txn.find_session(ids[i]);
            if (!s) return s.error();
            if (!*s) return errors::internal("a session is missing");
            lines.push_back(session_line(**s));
            const int n = static_cast<int>(i);
            auto at = txn.find_access_token(hash_of(0xa0, n));
            if (!at) return at.error();
            if (!*at) return errors::internal("an access token is missing");
            lines.push_back(fmt::format("access {} {} {} {} {} / {}", hex((*at)->token.token_hash),
                                        (*at)->token.session_id, (*at)->token.generation,
                                        (*at)->token.issued_ts, (*at)->token.expires_ts,
                                        session_line((*at)->session)));
            for (std::uint8_t kind : {std::uint8_t{0xb0}, std::uint8_t{0xc0}}) {
                auto rt = txn.find_refresh_token(hash_of(kind, n));
                if (!rt) return rt.error();
                if (!*rt) continue;
                lines.push_back(fmt::format(
                    "refresh {} {} {} {} {} sealed={} / {}", hex((*rt)->token.token_hash),
                    (*rt)->token.session_id, (*rt)->token.generation, (*rt)->token.issued_ts,
                    (*rt)->token.expires_ts, hex((*rt)->token.sealed_successor),
                    session_line((*rt)->session)));
            }
        }
        int live = 0;
        auto each = txn.for_each_live_access_token([&](const AccessTokenLookup&) { ++live; });
        if (!each) return each.error();
        lines.push_back(fmt::format("live access tokens {}", live));
        auto tokens = txn.list_registration_tokens();
        if (!tokens) return tokens.error();
        for (const auto& t : *tokens) {
            lines.push_back(fmt::format("regtoken {} {} {} {} {} {}", t.token,
                                        t.uses_allowed.value_or(-1), t.pending, t.completed,
                                        t.expiry_ts, t.created_ts));
        }
        auto log = txn.revocations_since(0, 1000);
        if (!log) return log.error();
        for (const auto& r : *log) {
            lines.push_back(fmt::format("revocation {} {} {} {} {} {}", r.id, r.session_id,
                                        r.user_id, r.device_id, static_cast<int>(r.reason), r.ts));
        }
        auto latest = txn.latest_revocation_id();
        if (!latest) return latest.error();
        auto through = txn.revocation_log_pruned_through();
        if (!through) return through.error();
        lines.push_back(
            fmt::format("revocation ids latest={} pruned_through={}", *latest, *through));
        auto revoked = txn.revoked_sessions_after(0, 1000);
        if (!revoked) return revoked.error();
        for (const auto& s : *revoked) lines.push_back("revoked " + session_line(s));
        if (auto r = read_client_data(txn, lines); !r) return r.error();
        return true;
    });
    EXPECT_TRUE(read) << (read ? "" : read.error().message);
    return lines;
}

std::int64_t count_rows(const PostgresTestDatabase& pgdb, const std::string& table) {
    auto rows = pgdb.query("SELECT count(*) FROM " + table);
    return rows.empty() ? -1 : std::stoll(rows[0]);
}

std::set<std::string> pg_table_names(const PostgresTestDatabase& pgdb) {
    auto names = pgdb.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
    return {names.begin(), names.end()};
}

class PostgresTransfer : public ::testing::Test {
protected:
    void SetUp() override {
        MYELIN_REQUIRE_POSTGRES();
        pgdb_ = std::make_unique<PostgresTestDatabase>();
        sqlite_path_ = dir_.file("homeserver.db");
    }

    SqliteToPostgresOptions options() const {
        SqliteToPostgresOptions o;
        o.sqlite_path = sqlite_path_;
        o.target = settings_of(pgdb_->options());
        return o;
    }

    // The filled SQLite database (closed, like a stopped server's) and its session ids.
    std::vector<std::int64_t> make_filled_sqlite() {
        auto db = open_sqlite(sqlite_path_);
        EXPECT_TRUE(db) << (db ? "" : db.error().message);
        if (!db) return {};
        auto ids = fill(**db);
        (*db)->close();
        return ids;
    }

    TempDir dir_;
    std::string sqlite_path_;
    std::unique_ptr<PostgresTestDatabase> pgdb_;
};

TEST_F(PostgresTransfer, TableRulesCoverExactlyTheTablesOfAFreshPostgresDatabase) {
    {
        auto db = open_postgres(pgdb_->options());
        ASSERT_TRUE(db) << db.error().message;
        (*db)->close();
    }
    EXPECT_EQ(pg_table_names(*pgdb_), rule_names())
        << "a migration added or removed a table: give it a line in "
           "src/myelin/storage/transfer/table_rules.cpp (copy, or skip with the reason)";
}

TEST_F(PostgresTransfer, CopiesEveryRowAndThePostgresBackendReadsThemAsSqliteDid) {
    const auto ids = make_filled_sqlite();
    ASSERT_EQ(ids.size(), static_cast<std::size_t>(kSessions));
    std::vector<std::string> before;
    {
        auto db = open_sqlite(sqlite_path_);
        ASSERT_TRUE(db);
        before = read_everything(**db, ids);
        (*db)->close();
    }

    auto o = options();
    o.buffer_bytes = 100;  // many COPY buffers, split anywhere in a row
    std::vector<std::string> progress;
    o.progress = [&](std::string_view line) { progress.emplace_back(line); };
    auto report = copy_sqlite_to_postgres(o);
    ASSERT_TRUE(report) << report.error().message;
    EXPECT_EQ(report->schema_version, postgres_schema_version());

    // The report: every table in rule order, the copied ones with their counts.
    ASSERT_EQ(report->tables.size(), table_rules().size());
    for (std::size_t i = 0; i < report->tables.size(); ++i) {
        const auto& t = report->tables[i];
        EXPECT_EQ(t.name, table_rules()[i].name);
        EXPECT_EQ(t.copied, table_rules()[i].handling == TableHandling::kCopy) << t.name;
        if (t.copied) {
            EXPECT_EQ(t.rows, count_rows(*pgdb_, t.name)) << t.name;
        } else {
            EXPECT_FALSE(t.skip_reason.empty()) << t.name;
        }
    }
    auto table = [&](std::string_view name) {
        return *std::find_if(report->tables.begin(), report->tables.end(),
                             [&](const auto& t) { return t.name == name; });
    };
    EXPECT_EQ(table("users").rows, 4);
    EXPECT_EQ(table("sessions").rows, kSessions);
    EXPECT_EQ(table("access_tokens").rows, kSessions);
    EXPECT_EQ(table("refresh_tokens").rows, kSessions + kSessions / 5);
    EXPECT_EQ(table("security_events").rows, 5);
    EXPECT_EQ(table("revocation_log").rows, 2);
    EXPECT_EQ(table("revocation_log_pruned").rows, 1);
    EXPECT_EQ(table("sessions").next_id, ids.back() + 1);
    EXPECT_EQ(table("security_events").next_id, 7) << "id 6 was handed out, then pruned";
    EXPECT_EQ(table("revocation_log").next_id, 5);
    EXPECT_EQ(table("users").next_id, std::nullopt);
    EXPECT_NE(std::find(progress.begin(), progress.end(), "copying sessions"), progress.end());

    // The PostgreSQL backend reads exactly what the SQLite backend read.
    auto db = open_postgres(pgdb_->options());
    ASSERT_TRUE(db) << db.error().message;
    const auto after = read_everything(**db, ids);
    EXPECT_EQ(after, before);

    // Spot checks that do not depend on read_everything: a lookup by hash, and the sealed
    // successor's bytes.
    auto sealed = read_sync<std::optional<RefreshTokenLookup>>(
        **db, [&](ReadTxn& txn) { return txn.find_refresh_token(hash_of(0xb0, 10)); });
    ASSERT_TRUE(sealed && *sealed);
    EXPECT_EQ((*sealed)->token.sealed_successor, bytes_of({0x00, 0xff, 0x00, 0x5c, 0x27}, 100, 10));
    EXPECT_EQ((*sealed)->session.session_id, ids[10]);
    auto access = read_sync<std::optional<AccessTokenLookup>>(
        **db, [&](ReadTxn& txn) { return txn.find_access_token(hash_of(0xa0, 299)); });
    ASSERT_TRUE(access && *access);
    EXPECT_EQ((*access)->session.session_id, ids[299]);

    // Stream positions continue after the copied ones (also those of deleted rows).
    auto next_to_device = write_sync<std::int64_t>(**db, [&](WriteTxn& txn) {
        return txn.insert_to_device({0, kUsers[0], "LAPTOP", kUsers[1], "m.x", "{}"});
    });
    ASSERT_TRUE(next_to_device) << next_to_device.error().message;
    EXPECT_EQ(*next_to_device, 4);

    // New rows continue after the copied ids (and after ids SQLite handed out, then pruned).
    auto next_session = write_sync<std::int64_t>(
        **db, [&](WriteTxn& txn) { return txn.insert_session(make_session(kUsers[0], "LAPTOP")); });
    ASSERT_TRUE(next_session) << next_session.error().message;
    EXPECT_EQ(*next_session, ids.back() + 1);
    auto next_event = write_sync<bool>(**db, [&](WriteTxn& txn) -> Result<bool> {
        SecurityEventRecord e;
        e.user_id = kUsers[0];
        e.ts = 99'999;
        e.kind = "login";
        if (auto r = txn.insert_security_event(e); !r) return r.error();
        if (auto r = txn.revoke_session(ids[10], 60'000, RevokeReason::kAdmin); !r) {
            return r.error();
        }
        return true;
    });
    ASSERT_TRUE(next_event) << next_event.error().message;
    auto newest = read_sync<std::vector<SecurityEventRecord>>(
        **db, [&](ReadTxn& txn) { return txn.security_events(kUsers[0], 1); });
    ASSERT_TRUE(newest && newest->size() == 1);
    EXPECT_EQ((*newest)[0].id, 7);
    auto log = read_sync<std::vector<RevocationRecord>>(
        **db, [&](ReadTxn& txn) { return txn.revocations_since(4, 10); });
    ASSERT_TRUE(log && log->size() == 1);
    EXPECT_EQ((*log)[0].id, 5);
    (*db)->close();
}

TEST_F(PostgresTransfer, RefusesATargetWithRowsAndWritesNothing) {
    make_filled_sqlite();
    ASSERT_TRUE(copy_sqlite_to_postgres(options()));
    const auto sessions = count_rows(*pgdb_, "sessions");
    const auto users = count_rows(*pgdb_, "users");

    auto again = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message.find("not empty"), std::string::npos) << again.error().message;
    EXPECT_NE(again.error().message.find("sessions"), std::string::npos) << again.error().message;
    EXPECT_EQ(count_rows(*pgdb_, "sessions"), sessions);
    EXPECT_EQ(count_rows(*pgdb_, "users"), users);

    // One row in any table is enough, also in a table the copy skips.
    pgdb_->query("DELETE FROM access_tokens; DELETE FROM refresh_tokens; DELETE FROM sessions;");
    pgdb_->query(
        "DELETE FROM devices; DELETE FROM users; DELETE FROM security_events; "
        "DELETE FROM registration_tokens; DELETE FROM revocation_log; "
        "DELETE FROM revocation_log_pruned");
    pgdb_->query("INSERT INTO registration_tokens (token, created_ts) VALUES ('x', 1)");
    auto once_more = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(once_more);
    EXPECT_NE(once_more.error().message.find("registration_tokens"), std::string::npos)
        << once_more.error().message;
    EXPECT_EQ(count_rows(*pgdb_, "users"), 0);
}

TEST_F(PostgresTransfer, RefusesAnUnknownSqliteTableBeforeTouchingTheTarget) {
    make_filled_sqlite();
    sqlite_exec(sqlite_path_, "CREATE TABLE future_things (id INTEGER PRIMARY KEY) STRICT");
    auto copied = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(copied);
    EXPECT_NE(copied.error().message.find("future_things"), std::string::npos)
        << copied.error().message;
    EXPECT_TRUE(pg_table_names(*pgdb_).empty()) << "not even the schema may be written";
}

TEST_F(PostgresTransfer, RefusesAnOlderSqliteSchemaAndSaysHowToUpgradeIt) {
    make_filled_sqlite();
    sqlite_exec(sqlite_path_,
                "DELETE FROM schema_version WHERE version = (SELECT MAX(version) "
                "FROM schema_version)");
    auto copied = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(copied);
    EXPECT_NE(copied.error().message.find("start this myelin's server on it once"),
              std::string::npos)
        << copied.error().message;
    EXPECT_TRUE(pg_table_names(*pgdb_).empty());
}

TEST_F(PostgresTransfer, FillsAnEmptyTargetThatAlreadyHasTheSchema) {
    make_filled_sqlite();
    {
        auto db = open_postgres(pgdb_->options());  // a server started on it once
        ASSERT_TRUE(db);
        (*db)->close();
    }
    auto copied = copy_sqlite_to_postgres(options());
    ASSERT_TRUE(copied) << copied.error().message;
    EXPECT_EQ(count_rows(*pgdb_, "users"), 4);
}

// The next session id the PostgreSQL backend hands out.
std::int64_t next_session_id(const PostgresTestDatabase& pgdb) {
    auto db = open_postgres(pgdb.options());
    EXPECT_TRUE(db);
    if (!db) return -1;
    auto id = write_sync<std::int64_t>(
        **db, [&](WriteTxn& txn) { return txn.insert_session(make_session(kUsers[0], "X")); });
    EXPECT_TRUE(id);
    (*db)->close();
    return id ? *id : -1;
}

TEST_F(PostgresTransfer, AVerificationFailureCommitsNothing) {
    make_filled_sqlite();
    // A boolean stored as 2 arrives as true (1): the read-back checksum differs from the source.
    sqlite_exec(sqlite_path_, "UPDATE users SET is_admin = 2 WHERE user_id = '@alice:example.org'");
    auto copied = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(copied);
    EXPECT_NE(copied.error().message.find("table users: the copy differs"), std::string::npos)
        << copied.error().message;
    for (const auto& rule : table_rules()) {
        if (rule.handling != TableHandling::kCopy) continue;
        EXPECT_EQ(count_rows(*pgdb_, std::string(rule.name)), 0) << rule.name;
    }
}

TEST_F(PostgresTransfer, AFailureAfterSomeTablesWereCopiedCommitsNothing) {
    make_filled_sqlite();
    // Bytes that are not UTF-8 in a text column (SQLite does not check): PostgreSQL refuses them
    // while copying security_events, after users, devices, sessions and the tokens went in and
    // the sessions' sequence was moved.
    sqlite_exec(sqlite_path_,
                "UPDATE security_events SET detail = CAST(X'C328FF' AS TEXT) "
                "WHERE id = 2");
    auto copied = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(copied);
    EXPECT_NE(copied.error().message.find("security_events"), std::string::npos)
        << copied.error().message;
    for (const auto& rule : table_rules()) {
        if (rule.handling != TableHandling::kCopy) continue;
        EXPECT_EQ(count_rows(*pgdb_, std::string(rule.name)), 0) << rule.name;
    }
    // The sequence restart was rolled back with the rows (ALTER SEQUENCE is transactional).
    EXPECT_EQ(next_session_id(*pgdb_), 1);
}

TEST_F(PostgresTransfer, RefusesATargetWithATableItDoesNotKnow) {
    make_filled_sqlite();
    pgdb_->query("CREATE TABLE someone_elses (id bigint)");
    auto copied = copy_sqlite_to_postgres(options());
    ASSERT_FALSE(copied);
    EXPECT_NE(copied.error().message.find("someone_elses"), std::string::npos)
        << copied.error().message;
    EXPECT_EQ(pg_table_names(*pgdb_), std::set<std::string>{"someone_elses"});
}

}  // namespace
}  // namespace myelin::storage
