#include "myelin/core/config.hpp"

#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "myelin/core/duration.hpp"

namespace myelin {
namespace {

TEST(Duration, ParsesEveryUnit) {
    EXPECT_EQ(parse_duration("500ms")->count(), 500);
    EXPECT_EQ(parse_duration("30s")->count(), 30'000);
    EXPECT_EQ(parse_duration("5m")->count(), 300'000);
    EXPECT_EQ(parse_duration("1h")->count(), 3'600'000);
    EXPECT_EQ(parse_duration("7d")->count(), 7 * 86'400'000LL);
    EXPECT_EQ(parse_duration("0")->count(), 0);
}

TEST(Duration, RejectsMalformed) {
    for (auto bad : {"", "5", "m", "-5m", "5 m", "5parsecs", "1.5h", "5M", "99999999999999d"}) {
        EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
    }
}

TEST(Duration, FormatsShortestExactUnit) {
    EXPECT_EQ(format_duration(std::chrono::milliseconds(300'000)), "5m");
    EXPECT_EQ(format_duration(std::chrono::milliseconds(90'000)), "90s");
    EXPECT_EQ(format_duration(std::chrono::milliseconds(1500)), "1500ms");
    EXPECT_EQ(format_duration(std::chrono::milliseconds(0)), "0");
}

TEST(Config, DefaultConfigTextParsesToDefaults) {
    auto c = parse_config(default_config_text(), "/srv/myelin");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->server_name, "localhost");
    EXPECT_EQ(c->listen.port, 8008);
    EXPECT_EQ(c->database.sqlite_path, std::filesystem::path("/srv/myelin/data/homeserver.db"));
    EXPECT_EQ(c->key_file, std::filesystem::path("/srv/myelin/data/myelin.key"));
    EXPECT_EQ(c->tokens.access_token_lifetime, std::chrono::minutes(5));
    EXPECT_EQ(c->tokens.nonrefreshable_access_token_lifetime.count(), 0);
    EXPECT_TRUE(c->rate_limits.enabled);
    EXPECT_EQ(c->rate_limits.trusted_proxies, (std::vector<std::string>{"127.0.0.1", "::1"}));
    EXPECT_EQ(c->passwords.hashing_queue, 0U);  // eight per hashing thread
    EXPECT_TRUE(c->registration.enabled);
}

// The event signing key lives beside the server secret unless configured; a relative path
// resolves against the config's folder.
TEST(Config, SigningKeyFileDefaultsBesideTheServerSecret) {
    auto c = parse_config(default_config_text(), "/srv/myelin");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->signing_key_file, std::filesystem::path("/srv/myelin/data/myelin.signing.key"));
    auto moved = parse_config("[secrets]\nkey_file = \"/keys/m.key\"\n", "/x");
    ASSERT_TRUE(moved);
    EXPECT_EQ(moved->signing_key_file, std::filesystem::path("/keys/myelin.signing.key"));
    auto pg = parse_config("[database]\nurl = \"postgresql://u@h/db\"\n", "/etc/myelin");
    ASSERT_TRUE(pg);
    EXPECT_EQ(pg->signing_key_file, std::filesystem::path("/etc/myelin/myelin.signing.key"));
    auto set = parse_config("[secrets]\nsigning_key_file = \"k/signing.key\"\n", "/etc/myelin");
    ASSERT_TRUE(set);
    EXPECT_EQ(set->signing_key_file, std::filesystem::path("/etc/myelin/k/signing.key"));
}

TEST(Config, EmptyConfigUsesDefaults) {
    auto c = parse_config("", "/x");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->public_baseurl, "http://127.0.0.1:8008/");
    EXPECT_EQ(c->rate_limits.trusted_proxies, (std::vector<std::string>{"127.0.0.1", "::1"}));
    auto none = parse_config("[rate_limits]\ntrusted_proxies = []\n", "/x");
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->rate_limits.trusted_proxies.empty());
    auto ranges =
        parse_config("[rate_limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n", "/x");
    ASSERT_TRUE(ranges) << ranges.error().message;
    // An entry that is neither an address nor a range is refused, not silently ignored.
    for (const char* bad : {"proxy.local", "10.0.0.0/33", "10.0.0.0/", "::/129", "1.2.3.4/x"}) {
        auto refused =
            parse_config(std::string("[rate_limits]\ntrusted_proxies = [\"") + bad + "\"]\n", "/x");
        ASSERT_FALSE(refused) << bad;
        EXPECT_NE(refused.error().message.find(bad), std::string::npos) << refused.error().message;
    }
}

TEST(Config, TokenCacheWarmingIsOffByDefaultAndCanBeTurnedOn) {
    auto c = parse_config(default_config_text(), "/x");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_FALSE(c->tokens.warm_cache_at_startup);
    EXPECT_NE(default_config_text().find("warm_cache_at_startup = false"), std::string::npos);
    auto on = parse_config("[tokens]\nwarm_cache_at_startup = true\n", "/x");
    ASSERT_TRUE(on) << on.error().message;
    EXPECT_TRUE(on->tokens.warm_cache_at_startup);
    auto bad = parse_config("[tokens]\nwarm_cache_at_startup = \"yes\"\n", "/x");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("tokens.warm_cache_at_startup"), std::string::npos);
}

TEST(Config, NativeTlsIsOffByDefault) {
    auto c = parse_config(default_config_text(), "/srv/myelin");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_FALSE(c->listen.tls());
    EXPECT_TRUE(c->listen.tls_certificate.empty());
    EXPECT_TRUE(c->listen.tls_private_key.empty());
    // The default text documents both keys (commented out).
    EXPECT_NE(default_config_text().find("# tls_certificate = "), std::string::npos);
    EXPECT_NE(default_config_text().find("# tls_private_key = "), std::string::npos);
}

TEST(Config, TlsPathsResolveAgainstTheConfigFolderAndMakeTheBaseUrlHttps) {
    auto c = parse_config(
        "[listen]\nport = 8448\ntls_certificate = \"tls/cert.pem\"\n"
        "tls_private_key = \"/etc/myelin/key.pem\"\n",
        "/srv/myelin");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_TRUE(c->listen.tls());
    EXPECT_EQ(c->listen.tls_certificate, std::filesystem::path("/srv/myelin/tls/cert.pem"));
    EXPECT_EQ(c->listen.tls_private_key, std::filesystem::path("/etc/myelin/key.pem"));
    EXPECT_EQ(c->public_baseurl, "https://127.0.0.1:8448/");
    // An explicit public_baseurl stays as written (a proxy or another name in front).
    auto explicit_url = parse_config(
        "public_baseurl = \"https://matrix.example.org/\"\n[listen]\n"
        "tls_certificate = \"c.pem\"\ntls_private_key = \"k.pem\"\n",
        "/x");
    ASSERT_TRUE(explicit_url) << explicit_url.error().message;
    EXPECT_EQ(explicit_url->public_baseurl, "https://matrix.example.org/");
}

TEST(Config, TlsNeedsBothCertificateAndKey) {
    auto cert_only = parse_config("[listen]\ntls_certificate = \"c.pem\"\n", "/x");
    ASSERT_FALSE(cert_only);
    EXPECT_EQ(cert_only.error().message.find("config key 'listen.tls_certificate' is set but "
                                             "'listen.tls_private_key' is not"),
              0U)
        << cert_only.error().message;
    auto key_only = parse_config("[listen]\ntls_private_key = \"k.pem\"\n", "/x");
    ASSERT_FALSE(key_only);
    EXPECT_EQ(key_only.error().message.find("config key 'listen.tls_private_key' is set but "
                                            "'listen.tls_certificate' is not"),
              0U)
        << key_only.error().message;
    auto not_a_string = parse_config("[listen]\ntls_certificate = true\n", "/x");
    ASSERT_FALSE(not_a_string);
    EXPECT_NE(not_a_string.error().message.find("listen.tls_certificate"), std::string::npos);
}

TEST(Config, BadValueNamesKeyValueAndExpectation) {
    auto c = parse_config("[tokens]\naccess_token_lifetime = \"5 parsecs\"\n", "/x");
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("tokens.access_token_lifetime"), std::string::npos);
    EXPECT_NE(c.error().message.find("5 parsecs"), std::string::npos);
    EXPECT_NE(c.error().message.find("duration"), std::string::npos);

    auto port = parse_config("[listen]\nport = \"abc\"\n", "/x");
    ASSERT_FALSE(port);
    EXPECT_NE(port.error().message.find("listen.port"), std::string::npos);
    EXPECT_NE(port.error().message.find("abc"), std::string::npos);

    auto range = parse_config("[listen]\nport = 70000\n", "/x");
    ASSERT_FALSE(range);
    EXPECT_NE(range.error().message.find("0 to 65535"), std::string::npos);
}

TEST(Config, UnknownKeyIsRejected) {
    auto c = parse_config("[tokens]\nacess_token_lifetime = \"5m\"\n", "/x");
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("tokens.acess_token_lifetime"), std::string::npos);
}

TEST(Config, InvalidTomlIsReported) {
    auto c = parse_config("server_name = \n", "/x");
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("TOML"), std::string::npos);
}

TEST(Config, DatabaseUrlForms) {
    auto abs = parse_config("[database]\nurl = \"sqlite:/var/lib/m.db\"\n", "/x");
    ASSERT_TRUE(abs);
    EXPECT_EQ(abs->database.sqlite_path, std::filesystem::path("/var/lib/m.db"));
    auto pg = parse_config("[database]\nurl = \"postgresql://u@h:5432/db\"\n", "/x");
    ASSERT_TRUE(pg);
    EXPECT_TRUE(pg->database.is_postgres);
    auto bad = parse_config("[database]\nurl = \"mysql://x\"\n", "/x");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("database.url"), std::string::npos);
}

TEST(Config, PostgresUrlIsParsedIntoItsParts) {
    auto pg = parse_config("[database]\nurl = \"postgres://my%40user:p%3Ass@db.example:6543/hs\"\n",
                           "/x");
    ASSERT_TRUE(pg) << pg.error().message;
    const PostgresUrl& u = pg->database.postgres;
    EXPECT_EQ(u.user, "my@user");
    EXPECT_EQ(u.password, "p:ss");
    EXPECT_EQ(u.host, "db.example");
    EXPECT_EQ(u.port, 6543);
    EXPECT_EQ(u.dbname, "hs");
    EXPECT_EQ(u.redacted(), "postgresql://my@user:***@db.example:6543/hs");

    auto v6 = parse_config("[database]\nurl = \"postgresql://u@[::1]/db\"\n", "/x");
    ASSERT_TRUE(v6) << v6.error().message;
    EXPECT_EQ(v6->database.postgres.host, "::1");
    EXPECT_EQ(v6->database.postgres.port, 5432);  // the default port
    EXPECT_EQ(v6->database.postgres.redacted(), "postgresql://u@[::1]:5432/db");
}

TEST(Config, MalformedPostgresUrlsAreRefusedWithoutShowingThePassword) {
    for (const char* url :
         {"postgresql://secretless@h:5432/", "postgresql://h:5432/db", "postgresql://u@:5432/db",
          "postgresql://u:hunter2@h:99999/db", "postgresql://u:hunter2@h:5432/db?sslmode=require",
          "postgresql://u:hunter2@h:x/db", "postgresql://u:hunter2%zz@h/db",
          "postgresql://u:hunter2@h"}) {
        auto c = parse_config(std::string("[database]\nurl = \"") + url + "\"\n", "/x");
        ASSERT_FALSE(c) << url;
        EXPECT_NE(c.error().message.find("database.url"), std::string::npos) << url;
        EXPECT_EQ(c.error().message.find("hunter2"), std::string::npos) << c.error().message;
    }
    EXPECT_EQ(redact_postgres_url("postgres://u:hunter2@h/db"), "postgres://u:***@h/db");
    EXPECT_EQ(redact_postgres_url("postgres://u@h/db"), "postgres://u@h/db");
}

TEST(Config, PostgresSettingsHaveDefaultsAndBounds) {
    auto d = parse_config("[database]\nurl = \"postgresql://u@h/db\"\n", "/x");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(d->database.synchronous_commit);  // durable by default
    EXPECT_EQ(d->database.pool_size, 8u);
    EXPECT_EQ(d->database.pool_timeout, std::chrono::seconds(10));
    EXPECT_TRUE(d->database.postgres.password.empty());

    auto set = parse_config(
        "[database]\nurl = \"postgresql://u@h/db\"\nsynchronous_commit = false\n"
        "pool_size = 3\npool_timeout = \"250ms\"\n",
        "/x");
    ASSERT_TRUE(set) << set.error().message;
    EXPECT_FALSE(set->database.synchronous_commit);
    EXPECT_EQ(set->database.pool_size, 3u);
    EXPECT_EQ(set->database.pool_timeout, std::chrono::milliseconds(250));

    for (const char* bad : {"pool_size = 0", "pool_size = 257", "pool_timeout = \"0\"",
                            "synchronous_commit = \"yes\""}) {
        auto c = parse_config(
            std::string("[database]\nurl = \"postgresql://u@h/db\"\n") + bad + "\n", "/x");
        EXPECT_FALSE(c) << bad;
    }
}

TEST(Config, PostgresPasswordComesFromTheUrlOrFromAFile) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("myelin-config-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        std::ofstream(dir / "pw") << "s3cret\r\nsecond line ignored\n";
        std::ofstream(dir / "empty") << "\n";
    }
    auto from_file =
        parse_config("[database]\nurl = \"postgresql://u@h/db\"\npassword_file = \"pw\"\n", dir);
    ASSERT_TRUE(from_file) << from_file.error().message;
    EXPECT_EQ(from_file->database.postgres.password, "s3cret");
    EXPECT_EQ(from_file->database.password_file, dir / "pw");

    auto both = parse_config(
        "[database]\nurl = \"postgresql://u:other@h/db\"\npassword_file = \"pw\"\n", dir);
    ASSERT_FALSE(both);
    EXPECT_NE(both.error().message.find("only one"), std::string::npos) << both.error().message;
    EXPECT_EQ(both.error().message.find("other"), std::string::npos);
    EXPECT_EQ(both.error().message.find("s3cret"), std::string::npos);

    auto missing =
        parse_config("[database]\nurl = \"postgresql://u@h/db\"\npassword_file = \"nope\"\n", dir);
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("password_file"), std::string::npos);
    auto empty =
        parse_config("[database]\nurl = \"postgresql://u@h/db\"\npassword_file = \"empty\"\n", dir);
    ASSERT_FALSE(empty);

    // A password file makes no sense with SQLite.
    auto sqlite = parse_config("[database]\npassword_file = \"pw\"\n", dir);
    ASSERT_FALSE(sqlite);
    EXPECT_NE(sqlite.error().message.find("password_file"), std::string::npos);
    std::filesystem::remove_all(dir);
}

TEST(Config, LifetimeCombinationsThatCannotWorkAreRefused) {
    auto idle = parse_config(
        "[tokens]\naccess_token_lifetime = \"1h\"\nsession_idle_timeout = \"30m\"\n", "/x");
    ASSERT_FALSE(idle);
    EXPECT_NE(idle.error().message.find("tokens.session_idle_timeout"), std::string::npos);
    auto abs = parse_config(
        "[tokens]\naccess_token_lifetime = \"1h\"\nsession_absolute_lifetime = \"10m\"\n", "/x");
    ASSERT_FALSE(abs);
    EXPECT_NE(abs.error().message.find("tokens.session_absolute_lifetime"), std::string::npos);
}

TEST(Config, HousekeepingDefaultsMatchTheDefaultText) {
    auto text = parse_config(default_config_text(), "/x");
    auto empty = parse_config("", "/x");
    ASSERT_TRUE(text) << text.error().message;
    ASSERT_TRUE(empty);
    for (const Config* c : {&*text, &*empty}) {
        EXPECT_EQ(c->housekeeping.interval, std::chrono::minutes(10));
        EXPECT_EQ(c->housekeeping.revocation_log_retention, std::chrono::hours(1));
        EXPECT_EQ(c->housekeeping.security_event_retention, std::chrono::hours(90 * 24));
    }
}

TEST(Config, HousekeepingKeysAreReadAndBounded) {
    auto set = parse_config(
        "[housekeeping]\ninterval = \"1s\"\nrevocation_log_retention = \"1m\"\n"
        "security_event_retention = \"0\"\n",
        "/x");
    ASSERT_TRUE(set) << set.error().message;
    EXPECT_EQ(set->housekeeping.interval, std::chrono::seconds(1));
    EXPECT_EQ(set->housekeeping.revocation_log_retention, std::chrono::minutes(1));
    EXPECT_EQ(set->housekeeping.security_event_retention.count(), 0);  // kept forever

    const std::pair<const char*, const char*> refused[] = {
        {"interval = \"500ms\"", "housekeeping.interval"},
        {"interval = \"0\"", "housekeeping.interval"},
        {"revocation_log_retention = \"59s\"", "housekeeping.revocation_log_retention"},
        {"revocation_log_retention = \"0\"", "housekeeping.revocation_log_retention"},
        {"security_event_retention = \"forever\"", "housekeeping.security_event_retention"},
    };
    for (const auto& [line, key] : refused) {
        auto c = parse_config(std::string("[housekeeping]\n") + line + "\n", "/x");
        ASSERT_FALSE(c) << line;
        EXPECT_NE(c.error().message.find(key), std::string::npos) << c.error().message;
    }
}

TEST(Config, SurprisingCombinationsWarn) {
    auto c = parse_config(
        "[tokens]\nsession_absolute_lifetime = \"12h\"\n[listen]\naddress = \"0.0.0.0\"\n", "/x");
    ASSERT_TRUE(c);
    auto warnings = config_warnings(*c);
    bool absolute = false, open_registration = false;
    for (const auto& w : warnings) {
        absolute = absolute || w.find("session_absolute_lifetime") != std::string::npos;
        open_registration =
            open_registration || w.find("registration.enabled") != std::string::npos;
    }
    EXPECT_TRUE(absolute);
    EXPECT_TRUE(open_registration);
    auto quiet = parse_config(default_config_text(), "/x");
    EXPECT_TRUE(config_warnings(*quiet).empty());
}

}  // namespace
}  // namespace myelin
