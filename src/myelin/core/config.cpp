#include "myelin/core/config.hpp"

#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include "myelin/core/duration.hpp"

namespace myelin {
namespace {

// "1.2.3.4", "::1", or either with "/bits" (at most 32 or 128).
bool is_address_or_range(std::string_view entry) {
    const auto slash = entry.find('/');
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(std::string(entry.substr(0, slash)), ec);
    if (ec) return false;
    if (slash == std::string_view::npos) return true;
    const std::string_view bits = entry.substr(slash + 1);
    if (bits.empty() || bits.size() > 3) return false;
    unsigned n = 0;
    for (char ch : bits) {
        if (ch < '0' || ch > '9') return false;
        n = n * 10 + static_cast<unsigned>(ch - '0');
    }
    return n <= (address.is_v4() ? 32U : 128U);
}

Error config_error(std::string message) {
    return errors::make(500, "M_UNKNOWN", std::move(message));
}

std::string describe(const toml::node& node) {
    std::ostringstream out;
    node.visit([&out](const auto& value) {
        if constexpr (toml::is_string<decltype(value)>) {
            out << '"' << value.get() << '"';
        } else {
            out << value;
        }
    });
    return out.str();
}

// Reads typed values out of one TOML document and remembers which keys it consumed, so that
// unknown (misspelt) keys can be reported.
class Reader {
public:
    explicit Reader(const toml::table& root) : root_(root) {}

    const toml::node* find(std::string_view key) {
        known_.insert(std::string(key));
        auto dot = key.find('.');
        if (dot == std::string_view::npos) return root_.get(key);
        const toml::table* section = root_.get_as<toml::table>(key.substr(0, dot));
        if (!section) return nullptr;
        return section->get(key.substr(dot + 1));
    }

    Result<void> string(std::string_view key, std::string& out) {
        const toml::node* node = find(key);
        if (!node) return {};
        if (auto s = node->as_string()) {
            out = s->get();
            return {};
        }
        return bad(key, *node, "a string");
    }

    Result<void> boolean(std::string_view key, bool& out) {
        const toml::node* node = find(key);
        if (!node) return {};
        if (auto b = node->as_boolean()) {
            out = b->get();
            return {};
        }
        return bad(key, *node, "true or false");
    }

    template <typename T>
    Result<void> integer(std::string_view key, T& out, std::int64_t min, std::int64_t max) {
        const toml::node* node = find(key);
        if (!node) return {};
        auto i = node->as_integer();
        if (!i || i->get() < min || i->get() > max) {
            return bad(key, *node, fmt::format("an integer from {} to {}", min, max));
        }
        out = static_cast<T>(i->get());
        return {};
    }

    Result<void> strings(std::string_view key, std::vector<std::string>& out) {
        const toml::node* node = find(key);
        if (!node) return {};
        const toml::array* array = node->as_array();
        if (!array) return bad(key, *node, "an array of strings");
        std::vector<std::string> values;
        for (const auto& item : *array) {
            auto s = item.as_string();
            if (!s) return bad(key, *node, "an array of strings");
            values.push_back(s->get());
        }
        out = std::move(values);
        return {};
    }

    Result<void> rate(std::string_view key, double& out) {
        const toml::node* node = find(key);
        if (!node) return {};
        double value = -1;
        if (auto f = node->as_floating_point()) value = f->get();
        if (auto i = node->as_integer()) value = static_cast<double>(i->get());
        if (!(value > 0) || value > 1e9) return bad(key, *node, "a number greater than zero");
        out = value;
        return {};
    }

    Result<void> duration(std::string_view key, std::chrono::milliseconds& out, bool allow_zero) {
        const toml::node* node = find(key);
        if (!node) return {};
        std::optional<std::chrono::milliseconds> parsed;
        if (auto s = node->as_string()) parsed = parse_duration(s->get());
        if (!parsed || (!allow_zero && parsed->count() == 0)) {
            return bad(key, *node,
                       std::string("a duration such as \"30s\", \"5m\", \"1h\" or \"7d\"") +
                           (allow_zero ? " (\"0\" for none)" : " greater than zero"));
        }
        out = *parsed;
        return {};
    }

    // duration() for a key that must be at least `minimum` (which is > 0).
    Result<void> duration_at_least(std::string_view key, std::chrono::milliseconds& out,
                                   std::chrono::milliseconds minimum) {
        if (auto r = duration(key, out, false); !r) return r;
        if (out >= minimum) return {};
        return config_error(fmt::format(
            "config key '{}' has the value \"{}\"; expected a duration of at least \"{}\"", key,
            format_duration(out), format_duration(minimum)));
    }

    // Every key present in the document that no reader asked for.
    std::vector<std::string> unknown_keys() const {
        std::vector<std::string> out;
        for (const auto& [k, v] : root_) {
            std::string key(k.str());
            if (const toml::table* section = v.as_table()) {
                for (const auto& [k2, v2] : *section) {
                    (void)v2;
                    std::string full = key + "." + std::string(k2.str());
                    if (!known_.count(full)) out.push_back(full);
                }
            } else if (!known_.count(key)) {
                out.push_back(key);
            }
        }
        return out;
    }

    static Error bad(std::string_view key, const toml::node& node, std::string_view expected) {
        return config_error(fmt::format("config key '{}' has the value {}; expected {}", key,
                                        describe(node), expected));
    }

private:
    const toml::table& root_;
    std::set<std::string> known_;
};

bool valid_server_name(std::string_view name) {
    if (name.empty() || name.size() > 255) return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
        if (!ok) return false;
    }
    return true;
}

// The first line of the password file (without its line ending). Errors name the file, never
// its content.
Result<std::string> read_password_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::string password;
    if (!in || !std::getline(in, password)) {
        return config_error(fmt::format(
            "config key 'database.password_file' names '{}', which cannot be read; expected a "
            "file holding the database password",
            path.string()));
    }
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
        return config_error(fmt::format(
            "config key 'database.password_file' names '{}', whose first line is empty; expected "
            "the database password",
            path.string()));
    }
    return password;
}

Result<void> read_all(Reader& r, Config& c) {
    auto check = [](Result<void> res) { return res; };
    Result<void> res;
#define MYELIN_READ(expr)     \
    do {                      \
        res = check(expr);    \
        if (!res) return res; \
    } while (false)
    MYELIN_READ(r.string("server_name", c.server_name));
    if (!valid_server_name(c.server_name)) {
        return config_error(fmt::format(
            "config key 'server_name' has the value \"{}\"; expected a host name such as "
            "\"example.org\" (letters, digits, '.', '-', optional :port)",
            c.server_name));
    }
    MYELIN_READ(r.string("public_baseurl", c.public_baseurl));
    MYELIN_READ(r.string("listen.address", c.listen.address));
    MYELIN_READ(r.integer("listen.port", c.listen.port, 0, 65535));
    MYELIN_READ(r.integer("listen.threads", c.listen.threads, 0, 256));
    std::string tls_certificate;
    std::string tls_private_key;
    MYELIN_READ(r.string("listen.tls_certificate", tls_certificate));
    MYELIN_READ(r.string("listen.tls_private_key", tls_private_key));
    MYELIN_READ(r.string("database.url", c.database.url));
    MYELIN_READ(r.integer("database.reader_threads", c.database.reader_threads, 1, 64));
    std::string password_file;
    MYELIN_READ(r.string("database.password_file", password_file));
    MYELIN_READ(r.boolean("database.synchronous_commit", c.database.synchronous_commit));
    MYELIN_READ(r.integer("database.pool_size", c.database.pool_size, 1, 256));
    MYELIN_READ(r.duration("database.pool_timeout", c.database.pool_timeout, false));
    std::string key_file;
    MYELIN_READ(r.string("secrets.key_file", key_file));
    std::string signing_key_file;
    MYELIN_READ(r.string("secrets.signing_key_file", signing_key_file));
    MYELIN_READ(r.boolean("registration.enabled", c.registration.enabled));
    MYELIN_READ(r.boolean("registration.allow_guests", c.registration.allow_guests));
    MYELIN_READ(r.boolean("registration.requires_token", c.registration.requires_token));
    MYELIN_READ(r.duration("tokens.access_token_lifetime", c.tokens.access_token_lifetime, false));
    MYELIN_READ(r.duration("tokens.nonrefreshable_access_token_lifetime",
                           c.tokens.nonrefreshable_access_token_lifetime, true));
    MYELIN_READ(r.duration("tokens.session_idle_timeout", c.tokens.session_idle_timeout, true));
    MYELIN_READ(
        r.duration("tokens.session_absolute_lifetime", c.tokens.session_absolute_lifetime, true));
    MYELIN_READ(
        r.boolean("tokens.refresh_reuse_revokes_session", c.tokens.refresh_reuse_revokes_session));
    MYELIN_READ(r.boolean("tokens.warm_cache_at_startup", c.tokens.warm_cache_at_startup));
    MYELIN_READ(r.integer("passwords.argon2_memory_kib", c.passwords.argon2_memory_kib, 1024,
                          4 * 1024 * 1024));
    MYELIN_READ(r.integer("passwords.argon2_iterations", c.passwords.argon2_iterations, 1, 64));
    MYELIN_READ(r.integer("passwords.hashing_threads", c.passwords.hashing_threads, 0, 256));
    MYELIN_READ(r.integer("passwords.hashing_queue", c.passwords.hashing_queue, 0, 1'000'000));
    MYELIN_READ(r.integer("passwords.max_length", c.passwords.max_length, 8, 65536));
    MYELIN_READ(r.integer("limits.max_header_bytes", c.limits.max_header_bytes, 1024, 1024 * 1024));
    MYELIN_READ(
        r.integer("limits.max_body_bytes", c.limits.max_body_bytes, 1024, 64 * 1024 * 1024));
    MYELIN_READ(r.duration("limits.request_timeout", c.limits.request_timeout, false));
    MYELIN_READ(r.duration("limits.idle_timeout", c.limits.idle_timeout, false));
    MYELIN_READ(r.integer("limits.max_connections", c.limits.max_connections, 1, 1'000'000));
    MYELIN_READ(
        r.integer("limits.max_connections_per_ip", c.limits.max_connections_per_ip, 0, 1'000'000));
    MYELIN_READ(r.duration("limits.shutdown_grace", c.limits.shutdown_grace, true));
    MYELIN_READ(r.boolean("rate_limits.enabled", c.rate_limits.enabled));
    MYELIN_READ(r.strings("rate_limits.trusted_proxies", c.rate_limits.trusted_proxies));
    MYELIN_READ(r.strings("rate_limits.exempt_users", c.rate_limits.exempt_users));
    for (const auto& proxy : c.rate_limits.trusted_proxies) {
        if (!is_address_or_range(proxy)) {
            return config_error(fmt::format(
                "config key 'rate_limits.trusted_proxies' has the entry \"{}\"; expected an IP "
                "address (\"10.0.0.2\", \"::1\") or a CIDR range (\"10.0.0.0/8\")",
                proxy));
        }
    }
    {
        auto& rl = c.rate_limits;
        const std::pair<const char*, BucketConfig*> buckets[] = {
            {"client_ip", &rl.client_ip},       {"login", &rl.login},
            {"failed_login", &rl.failed_login}, {"registration", &rl.registration},
            {"refresh", &rl.refresh},           {"token_validity", &rl.token_validity}};
        for (const auto& [name, bucket] : buckets) {
            MYELIN_READ(r.rate(fmt::format("rate_limits.{}_per_second", name), bucket->per_second));
            MYELIN_READ(r.rate(fmt::format("rate_limits.{}_burst", name), bucket->burst));
        }
    }
    MYELIN_READ(r.boolean("metrics.enabled", c.metrics.enabled));
    MYELIN_READ(r.string("metrics.address", c.metrics.address));
    MYELIN_READ(r.integer("metrics.port", c.metrics.port, 0, 65535));
    MYELIN_READ(r.duration_at_least("devices.last_seen_flush", c.devices.last_seen_flush,
                                    std::chrono::milliseconds(100)));
    MYELIN_READ(r.duration_at_least("housekeeping.interval", c.housekeeping.interval,
                                    std::chrono::seconds(1)));
    MYELIN_READ(r.duration_at_least("housekeeping.revocation_log_retention",
                                    c.housekeeping.revocation_log_retention,
                                    std::chrono::minutes(1)));
    MYELIN_READ(r.duration("housekeeping.security_event_retention",
                           c.housekeeping.security_event_retention, true));
    MYELIN_READ(r.string("logging.level", c.logging.level));
    MYELIN_READ(r.boolean("logging.access_log", c.logging.access_log));
#undef MYELIN_READ

    static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error"};
    if (!kLevels.count(c.logging.level)) {
        return config_error(fmt::format(
            "config key 'logging.level' has the value \"{}\"; expected one of trace, debug, "
            "info, warn, error",
            c.logging.level));
    }
    if (c.database.url.rfind("sqlite:", 0) == 0) {
        std::filesystem::path p(c.database.url.substr(7));
        if (p.empty()) {
            return config_error(fmt::format(
                "config key 'database.url' has the value \"{}\"; expected \"sqlite:PATH\" or "
                "\"postgresql://user@host:port/db\"",
                c.database.url));
        }
        c.database.sqlite_path = p.is_absolute() ? p : c.config_dir / p;
        if (!password_file.empty()) {
            return config_error(
                "config key 'database.password_file' is set but 'database.url' names SQLite; "
                "expected it only with a postgresql:// URL");
        }
    } else if (c.database.url.rfind("postgresql://", 0) == 0 ||
               c.database.url.rfind("postgres://", 0) == 0) {
        c.database.is_postgres = true;
        auto parsed = parse_postgres_url(c.database.url);
        if (!parsed) return parsed.error();
        c.database.postgres = std::move(*parsed);
        if (!password_file.empty()) {
            std::filesystem::path p(password_file);
            c.database.password_file = p.is_absolute() ? p : c.config_dir / p;
            auto password = read_password_file(c.database.password_file);
            if (!password) return password.error();
            if (!c.database.postgres.password.empty()) {
                return config_error(
                    "config keys 'database.url' and 'database.password_file' both give a "
                    "password; expected only one of them");
            }
            c.database.postgres.password = std::move(*password);
        }
    } else {
        return config_error(fmt::format(
            "config key 'database.url' has the value \"{}\"; expected \"sqlite:PATH\" or "
            "\"postgresql://user@host:port/db\"",
            redact_postgres_url(c.database.url)));
    }
    if (!key_file.empty()) {
        std::filesystem::path p(key_file);
        c.key_file = p.is_absolute() ? p : c.config_dir / p;
    } else if (!c.database.is_postgres) {
        c.key_file = c.database.sqlite_path.parent_path() / "myelin.key";
    } else {
        c.key_file = c.config_dir / "myelin.key";
    }
    if (!signing_key_file.empty()) {
        std::filesystem::path p(signing_key_file);
        c.signing_key_file = p.is_absolute() ? p : c.config_dir / p;
    } else {
        c.signing_key_file = c.key_file.parent_path() / "myelin.signing.key";
    }
    if (tls_certificate.empty() != tls_private_key.empty()) {
        return config_error(fmt::format(
            "config key '{}' is set but '{}' is not; expected both (native TLS) or neither "
            "(plain HTTP)",
            tls_certificate.empty() ? "listen.tls_private_key" : "listen.tls_certificate",
            tls_certificate.empty() ? "listen.tls_certificate" : "listen.tls_private_key"));
    }
    if (!tls_certificate.empty()) {
        std::filesystem::path cert(tls_certificate);
        std::filesystem::path key(tls_private_key);
        c.listen.tls_certificate = cert.is_absolute() ? cert : c.config_dir / cert;
        c.listen.tls_private_key = key.is_absolute() ? key : c.config_dir / key;
    }
    if (c.public_baseurl.empty()) {
        c.public_baseurl = fmt::format("{}://{}:{}/", c.listen.tls() ? "https" : "http",
                                       c.listen.address, c.listen.port);
    } else if (c.public_baseurl.rfind("http://", 0) != 0 &&
               c.public_baseurl.rfind("https://", 0) != 0) {
        return config_error(fmt::format(
            "config key 'public_baseurl' has the value \"{}\"; expected an http:// or https:// "
            "URL",
            c.public_baseurl));
    }

    // Lifetime combinations that cannot work.
    const auto& t = c.tokens;
    if (t.session_absolute_lifetime.count() > 0 &&
        t.session_absolute_lifetime < t.access_token_lifetime) {
        return config_error(fmt::format(
            "config key 'tokens.session_absolute_lifetime' has the value \"{}\"; expected \"0\" or "
            "a duration at least as long as tokens.access_token_lifetime (\"{}\")",
            format_duration(t.session_absolute_lifetime),
            format_duration(t.access_token_lifetime)));
    }
    if (t.session_idle_timeout.count() > 0 && t.session_idle_timeout <= t.access_token_lifetime) {
        return config_error(fmt::format(
            "config key 'tokens.session_idle_timeout' has the value \"{}\"; expected \"0\" or a "
            "duration longer than tokens.access_token_lifetime (\"{}\"), or every session would "
            "end before its first refresh",
            format_duration(t.session_idle_timeout), format_duration(t.access_token_lifetime)));
    }
    return {};
}

}  // namespace

Result<Config> parse_config(std::string_view toml_text, const std::filesystem::path& config_dir) {
    toml::table root;
    try {
        root = toml::parse(toml_text);
    } catch (const toml::parse_error& e) {
        return config_error(fmt::format("config is not valid TOML: {} (line {}, column {})",
                                        e.description(), e.source().begin.line,
                                        e.source().begin.column));
    }
    Config config;
    config.config_dir = config_dir;
    Reader reader(root);
    auto res = read_all(reader, config);
    if (!res) return res.error();
    auto unknown = reader.unknown_keys();
    if (!unknown.empty()) {
        return config_error(
            fmt::format("config key '{}' is not a known setting; expected only the keys that "
                        "`myelin generate-config` lists",
                        unknown.front()));
    }
    return config;
}

Result<Config> load_config(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return config_error(fmt::format("cannot read config file '{}'", path.string()));
    }
    std::stringstream buffer;
    buffer << in.rdbuf();
    auto dir = std::filesystem::absolute(path).parent_path();
    auto parsed = parse_config(buffer.str(), dir);
    if (!parsed) {
        Error e = parsed.error();
        e.message = path.string() + ": " + e.message;
        return e;
    }
    return parsed;
}

std::vector<std::string> config_warnings(const Config& c) {
    std::vector<std::string> out;
    const auto& t = c.tokens;
    if (t.session_absolute_lifetime.count() > 0 &&
        t.session_absolute_lifetime < std::chrono::hours(24)) {
        out.push_back(fmt::format(
            "tokens.session_absolute_lifetime is {}: every user is signed out that long after "
            "signing in, however active they are",
            format_duration(t.session_absolute_lifetime)));
    }
    if (t.session_idle_timeout.count() > 0 && t.session_idle_timeout < std::chrono::hours(24)) {
        out.push_back(fmt::format(
            "tokens.session_idle_timeout is {}: a device not opened for that long is signed out",
            format_duration(t.session_idle_timeout)));
    }
    if (t.nonrefreshable_access_token_lifetime.count() > 0) {
        out.push_back(fmt::format(
            "tokens.nonrefreshable_access_token_lifetime is {}: clients without refresh-token "
            "support (many bots, older clients) must sign in again that often",
            format_duration(t.nonrefreshable_access_token_lifetime)));
    }
    if (!t.refresh_reuse_revokes_session) {
        out.push_back(
            "tokens.refresh_reuse_revokes_session is false: a stolen refresh token that is "
            "replayed after rotation will not end the session");
    }
    bool loopback = c.listen.address == "127.0.0.1" || c.listen.address == "::1" ||
                    c.listen.address == "localhost";
    if (!loopback && c.registration.enabled) {
        out.push_back(fmt::format(
            "registration.enabled is true and the server listens on {}: anyone who can reach it "
            "can create accounts",
            c.listen.address));
    }
    if (!c.rate_limits.enabled && !loopback) {
        out.push_back("rate_limits.enabled is false on a non-loopback listener");
    }
    return out;
}

std::string default_config_text() {
    return R"(# Myelin homeserver configuration (TOML).
# Durations are written like "500ms", "30s", "5m", "1h", "7d"; "0" means none/never.
# Relative paths resolve against the folder this file is in.

# The domain part of every user ID (@alice:<server_name>). Cannot change later.
server_name = "localhost"
# The URL clients use to reach this server; served in /.well-known/matrix/client and /login.
# (Empty: http://<listen.address>:<listen.port>/, https:// with native TLS.)
public_baseurl = "http://127.0.0.1:8008/"

[listen]
address = "127.0.0.1"
port = 8008
# Network threads; 0: one per CPU core.
threads = 0
# Native TLS (HTTPS) on this listener instead of plain HTTP. The default, and the recommended
# setup, is plain HTTP on 127.0.0.1 behind a reverse proxy that terminates TLS. To serve HTTPS
# directly, set both: a PEM certificate chain (the server's certificate first, then its
# intermediates) and its PEM private key, which must not be readable by others (chmod o-rwx).
# TLS 1.2 and 1.3 only. SIGHUP re-reads both files; open connections keep the old certificate.
# tls_certificate = "/etc/myelin/tls/fullchain.pem"
# tls_private_key = "/etc/myelin/tls/privkey.pem"

[database]
# "sqlite:PATH" (embedded, the default) or "postgresql://user[:password]@host[:port]/db"
# (also "postgres://"; PostgreSQL 15 or newer). Several servers may share one PostgreSQL database.
url = "sqlite:data/homeserver.db"
# Read connections for SQLite.
reader_threads = 2
# PostgreSQL only: a file whose first line is the password, instead of putting it into the url.
# password_file = "/etc/myelin/db-password"
# PostgreSQL only: answer a write once its commit is on the database server's disk. false is
# faster but a crash of the database server may lose the last ~600 ms of answered writes.
synchronous_commit = true
# PostgreSQL only: connections (each with its own thread), and how long a request may wait for a
# free one before it is answered 503 with Retry-After.
pool_size = 8
pool_timeout = "10s"

[secrets]
# 32-byte server secret used to hash tokens; created with mode 0600 on first start.
# Empty: "myelin.key" beside the database.
key_file = ""
# ed25519 key that signs the events of rooms (Synapse's signing.key format, so it can move
# between servers); created with mode 0600 on first start, never logged. Every server sharing a
# PostgreSQL database needs the same one. Empty: "myelin.signing.key" beside key_file.
signing_key_file = ""

[registration]
# Open registration. The server listens on 127.0.0.1 by default; turn this off (or require
# registration tokens) before exposing it.
enabled = true
allow_guests = false
# Registration needs a registration token (create them with `myelin admin registration-token`).
requires_token = false

[tokens]
# Access-token lifetime for clients that asked for refresh tokens (refresh_token: true).
access_token_lifetime = "5m"
# Access-token lifetime for clients that did not; "0": their tokens never expire.
nonrefreshable_access_token_lifetime = "0"
# ROLLING idle timeout: a session whose refresh token goes unused this long ends ("0": never).
session_idle_timeout = "90d"
# FIXED absolute lifetime: a session ends this long after sign-in, however active ("0": never).
session_absolute_lifetime = "0"
# Replaying a refresh token after its successor was used revokes every token of that session
# (the device and its keys stay, so the user can sign in again into the same device).
refresh_reuse_revokes_session = true
# Load every usable access token into memory at start-up (~400 bytes and ~10 us per session:
# 1,000,000 sessions take ~400 MiB and 10+ s before the server answers). Off: each session's
# token is loaded by its first request after a restart (one storage read), so memory follows
# the sessions in use and start-up does not depend on how many are stored.
warm_cache_at_startup = false

[passwords]
# argon2id parameters (OWASP minimum: 19456 KiB, 2 iterations). Hashes made with other
# parameters are upgraded on the next successful login.
argon2_memory_kib = 19456
argon2_iterations = 2
# Hashing threads; 0: one per CPU core. Logins waiting beyond hashing_queue are refused at once
# (503 + Retry-After) rather than left to pile up; 0: eight per hashing thread (under a second of
# waiting at the default cost).
hashing_threads = 0
hashing_queue = 0
# Longer passwords are refused with 400 M_INVALID_PARAM, never truncated.
max_length = 1024

[limits]
max_header_bytes = 16384
# Default body limit for JSON APIs.
max_body_bytes = 65536
request_timeout = "30s"
idle_timeout = "75s"
max_connections = 10000
# Connections one client address (IPv6: one /64) may hold at once, so that one address cannot
# take every slot; beyond: 429 M_LIMIT_EXCEEDED, then close. 0: no cap. The trusted_proxies of
# [rate_limits] are exempt (every client behind them shares their address).
max_connections_per_ip = 100
shutdown_grace = "10s"

[rate_limits]
# Token buckets: <class>_per_second refill, up to <class>_burst. A refused request gets 429
# M_LIMIT_EXCEEDED with retry_after_ms and a Retry-After header.
enabled = true
# X-Forwarded-For is believed only from these peers (your reverse proxies): addresses or CIDR
# ranges ("10.0.0.0/8"). The default trusts a proxy on this machine; without it every client
# behind the proxy would share one budget. Set [] if untrusted local processes can connect.
trusted_proxies = ["127.0.0.1", "::1"]
# Users (full MXIDs) exempt from every limit, login included: bots that sign in on every run.
exempt_users = []
client_ip_per_second = 50.0        # every request, per client IP
client_ip_burst = 200.0
login_per_second = 0.5             # login attempts, per client IP
login_burst = 10.0
failed_login_per_second = 0.1      # failed logins, per account (unknown names too)
failed_login_burst = 5.0
registration_per_second = 0.2      # POST /register requests, per client IP (a registration
registration_burst = 10.0          # is usually two: the flows, then the auth)
refresh_per_second = 2.0           # refreshes, per device (both refresh endpoints)
refresh_burst = 20.0
token_validity_per_second = 0.2    # registration-token validity checks, per client IP
token_validity_burst = 5.0

[metrics]
# Prometheus text format at http://<address>:<port>/metrics, on its own listener.
enabled = true
address = "127.0.0.1"
port = 9008

[devices]
# Last-seen times and addresses of devices are kept in memory and written in one batch per
# interval (at least "100ms").
last_seen_flush = "5s"

[housekeeping]
# A background pass every interval deletes old rows, at most 10000 per write, so that the
# revocation log and the security event log do not grow forever (at least "1s").
interval = "10m"
# Revocation log entries older than this are deleted (at least "1m"). The running server reads
# the log every 200 ms; a server that falls further behind re-reads every revoked session.
revocation_log_retention = "1h"
# Security events (`myelin admin security-events`) older than this are deleted; "0": keep them
# forever.
security_event_retention = "90d"

[logging]
# trace, debug, info, warn or error.
level = "info"
# One line per request: method, path (secrets redacted), status, bytes, latency, request id.
access_log = true
)";
}

}  // namespace myelin
