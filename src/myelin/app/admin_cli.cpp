#include "myelin/app/admin_cli.hpp"

#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include "myelin/api/admin/admin_json.hpp"
#include "myelin/app/migrate_command.hpp"
#include "myelin/app/open_database.hpp"
#include "myelin/auth/password_hasher.hpp"
#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/sodium_init.hpp"
#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_cache.hpp"
#include "myelin/auth/token_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/core/duration.hpp"
#include "myelin/core/log.hpp"
#include "myelin/service/account_service.hpp"
#include "myelin/service/admin_service.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/service/user_ids.hpp"

namespace myelin::app {

struct AdminArgs {
    std::string config;
    bool json = false;

    CLI::App* create_user = nullptr;
    CLI::App* reset_password = nullptr;
    CLI::App* deactivate = nullptr;
    CLI::App* list_devices = nullptr;
    CLI::App* revoke = nullptr;
    CLI::App* token = nullptr;
    CLI::App* token_create = nullptr;
    CLI::App* token_list = nullptr;
    CLI::App* token_delete = nullptr;
    CLI::App* security_events = nullptr;
    CLI::App* migrate = nullptr;

    std::string user;  // USER or LOCALPART
    std::string device;
    std::string password;
    bool password_stdin = false;
    bool admin = false;
    std::string token_value;
    std::int64_t uses = -1;  // -1: unlimited
    std::string expires;
    int limit = 50;
    std::string from;           // migrate-sqlite-to-postgres: the SQLite file
    std::string to;             // ... the PostgreSQL URL
    std::string password_file;  // ... the file holding its password
};

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

namespace bj = boost::json;

// Everything a command may use, built from the config. Declaration order is construction
// order; destruction runs backwards (services before the hasher and the database).
struct AdminContext {
    Config config;
    SystemClock clock;
    std::unique_ptr<storage::Database> db;
    // The CLI never mints, hashes or unseals a token, so it needs no access to the server's key
    // file: an ephemeral secret satisfies the SessionService's construction.
    std::unique_ptr<auth::ServerSecret> secret;
    std::unique_ptr<auth::TokenHasher> token_hasher;
    std::unique_ptr<auth::SuccessorSealer> sealer;
    auth::TokenCache cache;  // stays empty: the running server's cache learns via the log
    std::unique_ptr<auth::PasswordHasher> password_hasher;
    std::unique_ptr<service::RegistrationTokens> registration_tokens;
    std::unique_ptr<service::UiaEngine> uia;
    std::unique_ptr<service::SessionService> sessions;
    std::unique_ptr<service::AccountService> accounts;
    std::unique_ptr<service::AdminService> admin;

    ~AdminContext() {
        admin.reset();
        accounts.reset();
        sessions.reset();
        uia.reset();
        registration_tokens.reset();
        password_hasher.reset();
        if (db) db->close();
    }
};

void fail(const std::string& message) { std::cerr << "myelin admin: " << message << "\n"; }

// Loads the config (exit 2 on failure) and opens the database and services (exit 1).
int open_context(const AdminArgs& args, AdminContext& ctx) {
    std::string path = args.config;
    if (path.empty()) {
        if (const char* env = std::getenv("MYELIN_CONFIG")) path = env;
    }
    if (path.empty()) {
        fail("no config file: pass --config FILE or set MYELIN_CONFIG");
        return kExitUsage;
    }
    auto config = load_config(path);
    if (!config) {
        fail(config.error().message);
        return kExitUsage;
    }
    ctx.config = std::move(*config);
    const Config& c = ctx.config;
    auth::ensure_sodium();
    auto db = open_database(c.database, DatabaseUser::kCommandLine);
    if (!db) {
        fail(db.error().message);
        return kExitFailure;
    }
    ctx.db = std::move(*db);
    ctx.secret = std::make_unique<auth::ServerSecret>(auth::ServerSecret::generate());
    ctx.token_hasher = std::make_unique<auth::TokenHasher>(*ctx.secret);
    ctx.sealer = std::make_unique<auth::SuccessorSealer>(*ctx.secret);
    auth::PasswordParams params;
    params.memory_kib = c.passwords.argon2_memory_kib;
    params.iterations = c.passwords.argon2_iterations;
    params.max_password_bytes = c.passwords.max_length;
    try {
        ctx.password_hasher = std::make_unique<auth::PasswordHasher>(params, 1, 4);
    } catch (const std::exception& e) {
        fail(std::string("cannot set up password hashing: ") + e.what());
        return kExitUsage;
    }
    ctx.registration_tokens = std::make_unique<service::RegistrationTokens>(*ctx.db, ctx.clock);
    ctx.uia = std::make_unique<service::UiaEngine>(ctx.clock, *ctx.password_hasher, *ctx.db,
                                                   ctx.registration_tokens.get(), c.server_name);
    ctx.sessions = std::make_unique<service::SessionService>(
        *ctx.db, *ctx.token_hasher, *ctx.sealer, ctx.cache, ctx.clock, c.tokens);
    ctx.accounts =
        std::make_unique<service::AccountService>(*ctx.db, *ctx.password_hasher, *ctx.sessions,
                                                  *ctx.uia, *ctx.registration_tokens, c, ctx.clock);
    ctx.admin = std::make_unique<service::AdminService>(*ctx.db, *ctx.sessions);
    return kExitOk;
}

// Runs one service coroutine to completion on a local io_context (storage and the hashing
// pool post their results back to it).
template <typename T>
Result<T> run_op(boost::asio::awaitable<Result<T>> op) {
    boost::asio::io_context io;
    std::optional<Result<T>> out;
    boost::asio::co_spawn(io, std::move(op), [&out](std::exception_ptr e, Result<T> r) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                out.emplace(errors::internal(std::string("unexpected failure: ") + ex.what()));
            }
            return;
        }
        out.emplace(std::move(r));
    });
    io.run();
    if (!out) return errors::internal("the operation did not complete");
    return std::move(*out);
}

// Prints the error of a failed operation; exit status 1.
int failed(const Error& error) {
    fail(error.message.empty() ? error.errcode : error.message + " (" + error.errcode + ")");
    return kExitFailure;
}

// The full user ID for a USER argument (localpart or MXID of this server); nullopt after
// printing the reason.
std::optional<std::string> resolve_user(const std::string& user, const Config& config) {
    auto id = service::user_id_for_login(user, config.server_name);
    if (!id) {
        fail("'" + user + "' is not a user of " + config.server_name);
        return std::nullopt;
    }
    return *id;
}

// The new password from --password or one line of stdin; nullopt after printing the reason.
std::optional<std::string> read_password(const AdminArgs& args, bool required) {
    if (args.password_stdin) {
        std::string line;
        std::getline(std::cin, line);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) {
            fail("no password on stdin");
            return std::nullopt;
        }
        return line;
    }
    if (!args.password.empty()) return args.password;
    if (required) fail("give the new password with --password P or --password-stdin");
    return std::nullopt;
}

std::string iso_time(std::int64_t ms) {
    if (ms <= 0) return "-";
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void print_json(const bj::value& v) { std::cout << bj::serialize(v) << "\n"; }

std::string token_line(const storage::RegistrationTokenRecord& t) {
    std::string uses = t.uses_allowed ? std::to_string(*t.uses_allowed) : "unlimited";
    std::string expiry = t.expiry_ts > 0 ? iso_time(t.expiry_ts) : "never";
    return t.token + "  uses_allowed=" + uses + " pending=" + std::to_string(t.pending) +
           " completed=" + std::to_string(t.completed) + " expires=" + expiry;
}

int cmd_create_user(const AdminArgs& args, AdminContext& ctx) {
    std::string localpart = args.user;
    // A full user ID of this server is accepted too.
    const std::string suffix = ":" + ctx.config.server_name;
    if (localpart.starts_with('@')) {
        if (!localpart.ends_with(suffix)) {
            fail("'" + localpart + "' is not a user ID of " + ctx.config.server_name);
            return kExitUsage;
        }
        localpart = localpart.substr(1, localpart.size() - 1 - suffix.size());
    }
    std::optional<std::string> password = read_password(args, false);
    if (args.password_stdin && !password) return kExitUsage;
    auto created = run_op(ctx.accounts->create_user(localpart, std::move(password), args.admin));
    if (!created) return failed(created.error());
    if (args.json) {
        print_json(bj::object{{"user_id", *created}, {"admin", args.admin}});
    } else {
        std::cout << "created " << *created << (args.admin ? " (admin)" : "") << "\n";
    }
    return kExitOk;
}

int cmd_reset_password(const AdminArgs& args, AdminContext& ctx) {
    auto user_id = resolve_user(args.user, ctx.config);
    if (!user_id) return kExitUsage;
    auto password = read_password(args, true);
    if (!password) return kExitUsage;
    auto done = run_op(ctx.accounts->reset_password(*user_id, std::move(*password)));
    if (!done) return failed(done.error());
    if (args.json) {
        print_json(bj::object{{"user_id", *user_id}, {"password_reset", true}});
    } else {
        std::cout << "password reset for " << *user_id << "; all its sessions ended\n";
    }
    return kExitOk;
}

int cmd_deactivate(const AdminArgs& args, AdminContext& ctx) {
    auto user_id = resolve_user(args.user, ctx.config);
    if (!user_id) return kExitUsage;
    auto done = run_op(ctx.accounts->deactivate(*user_id));
    if (!done) return failed(done.error());
    if (args.json) {
        print_json(bj::object{{"user_id", *user_id}, {"deactivated", true}});
    } else {
        std::cout << "deactivated " << *user_id << "\n";
    }
    return kExitOk;
}

int cmd_list_devices(const AdminArgs& args, AdminContext& ctx) {
    auto user_id = resolve_user(args.user, ctx.config);
    if (!user_id) return kExitUsage;
    auto devices = run_op(ctx.admin->devices(*user_id));
    if (!devices) return failed(devices.error());
    if (args.json) {
        bj::array list;
        for (const auto& d : *devices) list.push_back(api::admin::device_json(d));
        print_json(bj::object{{"user_id", *user_id}, {"devices", std::move(list)}});
        return kExitOk;
    }
    if (devices->empty()) std::cout << *user_id << " has no devices\n";
    for (const auto& d : *devices) {
        std::cout << d.device_id << "  name=\"" << d.display_name.value_or("") << "\""
                  << " last_seen=" << iso_time(d.last_seen_ts)
                  << " ip=" << (d.last_seen_ip.empty() ? "-" : d.last_seen_ip) << "\n";
    }
    return kExitOk;
}

int cmd_revoke(const AdminArgs& args, AdminContext& ctx) {
    auto user_id = resolve_user(args.user, ctx.config);
    if (!user_id) return kExitUsage;
    std::optional<std::string> device;
    if (!args.device.empty()) device = args.device;
    auto ended = run_op(ctx.admin->revoke(*user_id, device));
    if (!ended) return failed(ended.error());
    if (args.json) {
        bj::object o{{"user_id", *user_id}, {"sessions_revoked", *ended}};
        if (device) {
            o["device_id"] = *device;
        } else {
            o["device_id"] = nullptr;
        }
        print_json(o);
    } else {
        std::cout << "revoked " << *ended << " session(s) of " << *user_id;
        if (device) std::cout << " on device " << *device;
        std::cout << "\n";
    }
    return kExitOk;
}

int cmd_token_create(const AdminArgs& args, AdminContext& ctx) {
    std::optional<std::string> token;
    if (!args.token_value.empty()) token = args.token_value;
    std::optional<std::int64_t> uses;
    if (args.uses >= 0) uses = args.uses;
    std::int64_t expiry_ts = 0;
    if (!args.expires.empty()) {
        auto d = parse_duration(args.expires);
        if (!d || d->count() <= 0) {
            fail("--expires: expected a duration such as 12h or 7d, got '" + args.expires + "'");
            return kExitUsage;
        }
        expiry_ts = ctx.clock.now_ms() + d->count();
    }
    auto created = ctx.registration_tokens->create_sync(std::move(token), uses, expiry_ts);
    if (!created) return failed(created.error());
    if (args.json) {
        print_json(api::admin::registration_token_json(*created));
    } else {
        std::cout << token_line(*created) << "\n";
    }
    return kExitOk;
}

int cmd_token_list(const AdminArgs& args, AdminContext& ctx) {
    auto tokens = ctx.registration_tokens->list_sync();
    if (!tokens) return failed(tokens.error());
    if (args.json) {
        bj::array list;
        for (const auto& t : *tokens) list.push_back(api::admin::registration_token_json(t));
        print_json(bj::object{{"registration_tokens", std::move(list)}});
        return kExitOk;
    }
    if (tokens->empty()) std::cout << "no registration tokens\n";
    for (const auto& t : *tokens) std::cout << token_line(t) << "\n";
    return kExitOk;
}

int cmd_token_delete(const AdminArgs& args, AdminContext& ctx) {
    auto removed = ctx.registration_tokens->remove_sync(args.token_value);
    if (!removed) return failed(removed.error());
    if (!*removed) {
        fail("no registration token '" + args.token_value + "'");
        return kExitFailure;
    }
    if (args.json) {
        print_json(bj::object{{"token", args.token_value}, {"deleted", true}});
    } else {
        std::cout << "deleted " << args.token_value << "\n";
    }
    return kExitOk;
}

int cmd_security_events(const AdminArgs& args, AdminContext& ctx) {
    auto user_id = resolve_user(args.user, ctx.config);
    if (!user_id) return kExitUsage;
    if (args.limit < 1 || args.limit > service::AdminService::kMaxEvents) {
        fail("--limit: expected 1 to " + std::to_string(service::AdminService::kMaxEvents));
        return kExitUsage;
    }
    auto events = run_op(ctx.admin->security_events(*user_id, args.limit));
    if (!events) return failed(events.error());
    if (args.json) {
        bj::array list;
        for (const auto& e : *events) list.push_back(api::admin::security_event_json(e));
        print_json(bj::object{{"user_id", *user_id}, {"events", std::move(list)}});
        return kExitOk;
    }
    if (events->empty()) std::cout << "no security events for " << *user_id << "\n";
    for (const auto& e : *events) {
        std::cout << iso_time(e.ts) << "  " << e.kind
                  << "  device=" << (e.device_id.empty() ? "-" : e.device_id) << "  " << e.detail
                  << "\n";
    }
    return kExitOk;
}

// The options every admin command accepts.
void add_common(CLI::App* cmd, AdminArgs& args) {
    cmd->add_option("--config,-c", args.config, "Config file (or set MYELIN_CONFIG)");
    cmd->add_flag("--json", args.json, "Print one JSON object instead of text");
}

void add_password_options(CLI::App* cmd, AdminArgs& args) {
    auto* pw = cmd->add_option("--password", args.password,
                               "The password (visible to other local users: prefer stdin)");
    auto* pw_stdin =
        cmd->add_flag("--password-stdin", args.password_stdin, "Read the password from stdin");
    pw->excludes(pw_stdin);
}

}  // namespace

AdminCli::AdminCli(CLI::App& cli) : args_(std::make_unique<AdminArgs>()) {
    AdminArgs& a = *args_;
    admin_ = cli.add_subcommand("admin", "Operator commands against the configured database");
    admin_->require_subcommand(1);
    add_common(admin_, a);

    a.create_user = admin_->add_subcommand("create-user", "Create an account");
    a.create_user->add_option("LOCALPART", a.user, "The new user's localpart")->required();
    add_password_options(a.create_user, a);
    a.create_user->add_flag("--admin", a.admin, "Give the account the admin flag");
    add_common(a.create_user, a);

    a.reset_password = admin_->add_subcommand(
        "reset-password", "Set a new password and end every session of the user");
    a.reset_password->add_option("USER", a.user, "Localpart or user ID")->required();
    add_password_options(a.reset_password, a);
    add_common(a.reset_password, a);

    a.deactivate = admin_->add_subcommand("deactivate", "Deactivate an account for good");
    a.deactivate->add_option("USER", a.user, "Localpart or user ID")->required();
    add_common(a.deactivate, a);

    a.list_devices = admin_->add_subcommand("list-devices", "List a user's devices");
    a.list_devices->add_option("USER", a.user, "Localpart or user ID")->required();
    add_common(a.list_devices, a);

    a.revoke =
        admin_->add_subcommand("revoke", "End the sessions of a user (of one device, when given)");
    a.revoke->add_option("USER", a.user, "Localpart or user ID")->required();
    a.revoke->add_option("DEVICE", a.device, "Only this device");
    add_common(a.revoke, a);

    a.token = admin_->add_subcommand("registration-token", "Manage registration tokens");
    a.token->require_subcommand(1);
    add_common(a.token, a);
    a.token_create = a.token->add_subcommand("create", "Create a registration token");
    a.token_create->add_option("--token", a.token_value, "The token (default: 16 random chars)");
    a.token_create->add_option("--uses", a.uses, "Registrations allowed (default: unlimited)")
        ->check(CLI::NonNegativeNumber);
    a.token_create->add_option("--expires", a.expires, "Lifetime, e.g. 12h or 7d (default: never)");
    add_common(a.token_create, a);
    a.token_list = a.token->add_subcommand("list", "List registration tokens");
    add_common(a.token_list, a);
    a.token_delete = a.token->add_subcommand("delete", "Delete a registration token");
    a.token_delete->add_option("TOKEN", a.token_value, "The token")->required();
    add_common(a.token_delete, a);

    a.security_events =
        admin_->add_subcommand("security-events", "Show a user's security events, newest first");
    a.security_events->add_option("USER", a.user, "Localpart or user ID")->required();
    a.security_events->add_option("--limit", a.limit, "Most events shown (default 50)");
    add_common(a.security_events, a);

    a.migrate = admin_->add_subcommand(
        "migrate-sqlite-to-postgres",
        "Copy a SQLite database (server stopped) into an empty PostgreSQL database");
    a.migrate->add_option("--from", a.from, "The SQLite database file")->required();
    a.migrate->add_option("--to", a.to, "postgresql://user[:password]@host[:port]/db")->required();
    a.migrate->add_option("--password-file", a.password_file,
                          "A file whose first line is the PostgreSQL password");
    a.migrate->add_flag("--json", a.json, "Print one JSON object instead of text");
}

AdminCli::~AdminCli() = default;

bool AdminCli::chosen() const { return admin_->parsed(); }

int AdminCli::run() {
    const AdminArgs& a = *args_;
    // Service logs (warnings and errors only) go to stderr; stdout carries the answer.
    log::init("warn");
    int rc = kExitUsage;
    if (a.migrate->parsed()) {
        // Needs no config: both databases are named on the command line.
        MigrateArgs m{a.from, a.to, a.password_file, a.json};
        rc = run_migrate(m);
        log::shutdown();
        return rc;
    }
    {
        AdminContext ctx;
        rc = open_context(a, ctx);
        if (rc == kExitOk) {
            if (a.create_user->parsed()) {
                rc = cmd_create_user(a, ctx);
            } else if (a.reset_password->parsed()) {
                rc = cmd_reset_password(a, ctx);
            } else if (a.deactivate->parsed()) {
                rc = cmd_deactivate(a, ctx);
            } else if (a.list_devices->parsed()) {
                rc = cmd_list_devices(a, ctx);
            } else if (a.revoke->parsed()) {
                rc = cmd_revoke(a, ctx);
            } else if (a.token_create->parsed()) {
                rc = cmd_token_create(a, ctx);
            } else if (a.token_list->parsed()) {
                rc = cmd_token_list(a, ctx);
            } else if (a.token_delete->parsed()) {
                rc = cmd_token_delete(a, ctx);
            } else if (a.security_events->parsed()) {
                rc = cmd_security_events(a, ctx);
            } else {
                fail("no command given");
                rc = kExitUsage;
            }
        }
    }
    log::shutdown();
    return rc;
}

}  // namespace myelin::app
