#pragma once

// The server configuration: a TOML file (see `myelin generate-config` for the commented
// default). Loading validates every key; a bad config yields an error that names the key, the
// bad value and what is expected, and the binary exits with status 2 without starting anything.
// A Config is a plain value, read-only once loaded, safe to share between threads.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/core/postgres_url.hpp"

namespace myelin {

struct ListenConfig {
    std::string address = "127.0.0.1";
    std::uint16_t port = 8008;
    unsigned threads = 0;  // network threads; 0: one per core
    // Native TLS on this listener: both set (resolved against the config's folder) or neither
    // (plain HTTP, for a reverse proxy). The files themselves are read and checked by
    // http::TlsContext::load, at start, by check-config and on SIGHUP.
    std::filesystem::path tls_certificate;  // PEM: the certificate, then any intermediates
    std::filesystem::path tls_private_key;  // PEM; must not be accessible by others
    bool tls() const { return !tls_certificate.empty(); }
};

struct DatabaseConfig {
    // As written; may hold a PostgreSQL password, so never log it (postgres.redacted() is safe).
    std::string url = "sqlite:data/homeserver.db";
    std::filesystem::path sqlite_path;  // resolved against the config's folder (sqlite: URLs)
    bool is_postgres = false;
    unsigned reader_threads = 2;  // SQLite read connections
    // postgresql:// URLs: the parsed URL, its password taken from the URL or from password_file.
    PostgresUrl postgres;
    std::filesystem::path password_file;  // resolved; empty: none
    // PostgreSQL's synchronous_commit for our sessions: on, a write is answered once its commit
    // is on disk; off, a crash of the database server may lose the last ~600 ms of commits.
    bool synchronous_commit = true;
    unsigned pool_size = 8;  // PostgreSQL connections, each with its own thread
    // Longest a storage job waits for a free PostgreSQL connection before it fails with 503.
    std::chrono::milliseconds pool_timeout{10'000};
};

struct RegistrationConfig {
    bool enabled = true;
    bool allow_guests = false;
    bool requires_token = false;  // registration needs m.login.registration_token
};

struct TokensConfig {
    // Lifetime of access tokens handed to clients that opted into refresh tokens.
    std::chrono::milliseconds access_token_lifetime{5 * 60'000};
    // Lifetime of access tokens for clients that did not opt in; 0: they do not expire.
    std::chrono::milliseconds nonrefreshable_access_token_lifetime{0};
    // Rolling: a session whose refresh token goes unused this long ends; 0: never.
    std::chrono::milliseconds session_idle_timeout{90LL * 86'400'000};
    // Fixed: a session ends this long after sign-in, whatever happens; 0: never.
    std::chrono::milliseconds session_absolute_lifetime{0};
    // Presenting a rotated-out refresh token revokes the whole session (keeps the device).
    bool refresh_reuse_revokes_session = true;
    // Load every usable access token into the token cache at start-up. Off: the cache fills as
    // tokens are presented (the first request of each session after a restart reads storage
    // once), so start-up time and memory do not grow with the number of sessions stored.
    bool warm_cache_at_startup = false;
};

struct PasswordsConfig {
    std::uint64_t argon2_memory_kib = 19456;
    std::uint64_t argon2_iterations = 2;
    unsigned hashing_threads = 0;   // 0: one per core
    std::size_t hashing_queue = 0;  // jobs waiting beyond the running ones (0: 8 per thread)
    std::size_t max_length = 1024;  // bytes; longer: 400 M_INVALID_PARAM
};

struct LimitsConfig {
    std::size_t max_header_bytes = 16 * 1024;
    std::size_t max_body_bytes = 64 * 1024;
    std::chrono::milliseconds request_timeout{30'000};
    std::chrono::milliseconds idle_timeout{75'000};
    std::size_t max_connections = 10'000;
    // Connections one client address (IPv6: one /64) may hold at once; 0: no cap. Trusted
    // proxies ([rate_limits] trusted_proxies) are exempt.
    std::size_t max_connections_per_ip = 100;
    std::chrono::milliseconds shutdown_grace{10'000};
};

// A token bucket: `per_second` tokens refill continuously up to `burst`.
struct BucketConfig {
    double per_second = 1.0;
    double burst = 10.0;
};

struct RateLimitsConfig {
    bool enabled = true;
    // Peers whose X-Forwarded-For header is believed (exact IP addresses). Loopback by
    // default: a reverse proxy on the same machine is the common deployment, and without this
    // every client behind it would share the proxy's one per-IP budget.
    std::vector<std::string> trusted_proxies{"127.0.0.1", "::1"};
    // Users (full MXIDs) exempt from every limit, login included (bots).
    std::vector<std::string> exempt_users;
    BucketConfig client_ip{50.0, 200.0};    // every request, per client IP
    BucketConfig login{0.5, 10.0};          // login attempts, per client IP
    BucketConfig failed_login{0.1, 5.0};    // failed logins, per account (known or not)
    BucketConfig registration{0.2, 10.0};   // POST /register requests, per client IP
    BucketConfig refresh{2.0, 20.0};        // refreshes, per device (both endpoints)
    BucketConfig token_validity{0.2, 5.0};  // registration-token validity checks, per IP
};

struct MetricsConfig {
    bool enabled = true;
    std::string address = "127.0.0.1";
    std::uint16_t port = 9008;
};

struct DevicesConfig {
    // How often the last-seen times and addresses of devices are written to storage (one batch
    // per interval); at least 100ms.
    std::chrono::milliseconds last_seen_flush{5'000};
};

struct HousekeepingConfig {
    // Time between two housekeeping passes; at least 1s.
    std::chrono::milliseconds interval{10 * 60'000};
    // Revocation log entries older than this are deleted; at least 1m (the log is followed every
    // 200 ms, so only a stalled follower is ever that far behind).
    std::chrono::milliseconds revocation_log_retention{60 * 60'000};
    // Security events older than this are deleted; 0: kept forever.
    std::chrono::milliseconds security_event_retention{90LL * 86'400'000};
};

struct LoggingConfig {
    std::string level = "info";
    bool access_log = true;
};

struct Config {
    std::string server_name = "localhost";
    std::string public_baseurl;  // default: http://<listen.address>:<listen.port>/
    ListenConfig listen;
    DatabaseConfig database;
    std::filesystem::path key_file;  // [secrets] key_file; default: beside the database
    // [secrets] signing_key_file: the ed25519 key that signs events (Synapse's signing.key
    // format); default: "myelin.signing.key" beside key_file.
    std::filesystem::path signing_key_file;
    RegistrationConfig registration;
    TokensConfig tokens;
    PasswordsConfig passwords;
    LimitsConfig limits;
    RateLimitsConfig rate_limits;
    MetricsConfig metrics;
    DevicesConfig devices;
    HousekeepingConfig housekeeping;
    LoggingConfig logging;
    std::filesystem::path config_dir;  // the folder relative paths resolve against
};

// Parses and validates TOML text. `config_dir` anchors relative paths. Errors name the key
// ("tokens.access_token_lifetime"), the bad value, and the expectation.
Result<Config> parse_config(std::string_view toml_text, const std::filesystem::path& config_dir);

// Reads and parses the file at `path`.
Result<Config> load_config(const std::filesystem::path& path);

// Combinations that are legal but likely to surprise an operator (one sentence each).
std::vector<std::string> config_warnings(const Config& config);

// The complete, commented default configuration.
std::string default_config_text();

}  // namespace myelin
