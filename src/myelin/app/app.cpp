#include "myelin/app/app.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "myelin/api/client/routes.hpp"
#include "myelin/api/dispatcher.hpp"
#include "myelin/api/router.hpp"
#include "myelin/auth/password_hasher.hpp"
#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/sodium_init.hpp"
#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_cache.hpp"
#include "myelin/auth/token_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/log.hpp"
#include "myelin/http/server.hpp"
#include "myelin/service/account_service.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/storage/sqlite/sqlite_database.hpp"

namespace myelin::app {

struct App::Impl {
    Config config;
    SystemClock clock;
    std::unique_ptr<storage::Database> db;
    std::unique_ptr<auth::ServerSecret> secret;
    std::unique_ptr<auth::TokenHasher> token_hasher;
    std::unique_ptr<auth::SuccessorSealer> sealer;
    auth::TokenCache cache;
    std::unique_ptr<auth::PasswordHasher> password_hasher;
    std::unique_ptr<service::UiaSessions> uia;
    std::unique_ptr<service::SessionService> sessions;
    std::unique_ptr<service::AccountService> accounts;
    std::unique_ptr<api::Services> services;
    api::Router router;
    std::unique_ptr<api::ClientDispatcher> dispatcher;
    std::unique_ptr<http::Server> server;
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

App::~App() {
    if (!impl_) return;
    impl_->server.reset();
    impl_->password_hasher.reset();
    if (impl_->db) impl_->db->close();
}

namespace {

Result<void> ensure_private_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    if (dir.empty() || std::filesystem::exists(dir, ec)) return {};
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        return errors::internal("cannot create data folder '" + dir.string() +
                                "': " + ec.message());
    }
    ::chmod(dir.c_str(), 0700);
    return {};
}

}  // namespace

Result<std::unique_ptr<App>> App::create(Config config) {
    auth::ensure_sodium();
    auto impl = std::make_unique<Impl>();
    impl->config = std::move(config);
    const Config& c = impl->config;
    if (c.database.is_postgres) {
        return errors::internal(
            "config key 'database.url' names PostgreSQL, which this build does not support yet; "
            "expected \"sqlite:PATH\"");
    }
    if (auto r = ensure_private_dir(c.database.sqlite_path.parent_path()); !r) return r.error();
    if (auto r = ensure_private_dir(c.key_file.parent_path()); !r) return r.error();

    auto secret = auth::load_or_create_server_secret(c.key_file);
    if (!secret) return secret.error();
    impl->secret = std::make_unique<auth::ServerSecret>(std::move(*secret));
    impl->token_hasher = std::make_unique<auth::TokenHasher>(*impl->secret);
    impl->sealer = std::make_unique<auth::SuccessorSealer>(*impl->secret);

    storage::SqliteOptions sqlite_options;
    sqlite_options.reader_threads = static_cast<int>(c.database.reader_threads);
    auto db = storage::open_sqlite(c.database.sqlite_path.string(), sqlite_options);
    if (!db) return db.error();
    impl->db = std::move(*db);

    auth::PasswordParams params;
    params.memory_kib = c.passwords.argon2_memory_kib;
    params.iterations = c.passwords.argon2_iterations;
    params.max_password_bytes = c.passwords.max_length;
    impl->password_hasher = std::make_unique<auth::PasswordHasher>(
        params, c.passwords.hashing_threads, c.passwords.hashing_queue);
    impl->uia = std::make_unique<service::UiaSessions>(impl->clock);
    impl->sessions = std::make_unique<service::SessionService>(
        *impl->db, *impl->token_hasher, *impl->sealer, impl->cache, impl->clock, c.tokens);
    impl->accounts = std::make_unique<service::AccountService>(
        *impl->db, *impl->password_hasher, *impl->sessions, *impl->uia, c, impl->clock);
    impl->services =
        std::make_unique<api::Services>(api::Services{c, *impl->sessions, *impl->accounts});
    api::client::add_client_routes(impl->router, *impl->services);
    impl->dispatcher = std::make_unique<api::ClientDispatcher>(impl->router, *impl->sessions,
                                                               c.limits.max_body_bytes);

    auto warmed = impl->sessions->warm_cache();
    if (!warmed) return warmed.error();
    log::app()->info("token cache warmed with {} access tokens", *warmed);

    http::ServerOptions options;
    options.address = c.listen.address;
    options.port = c.listen.port;
    options.threads = c.listen.threads;
    options.access_log = c.logging.access_log;
    options.limits.max_header_bytes = c.limits.max_header_bytes;
    options.limits.default_body_bytes = c.limits.max_body_bytes;
    options.limits.request_timeout = c.limits.request_timeout;
    options.limits.idle_timeout = c.limits.idle_timeout;
    options.limits.max_connections = c.limits.max_connections;
    options.limits.shutdown_grace = c.limits.shutdown_grace;
    impl->server = std::make_unique<http::Server>(options, *impl->dispatcher);
    return std::unique_ptr<App>(new App(std::move(impl)));
}

Result<void> App::run() {
    auto& impl = *impl_;
    boost::asio::io_context signals_context;
    boost::asio::signal_set signals(signals_context, SIGINT, SIGTERM);
    if (auto r = impl.server->start(); !r) return r.error();
    log::app()->info("myelin {} serving {} on http://{}:{} (storage: {})", MYELIN_VERSION,
                     impl.config.server_name, impl.config.listen.address, impl.server->port(),
                     impl.db->backend_name());
    signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
        log::app()->info("signal {} received: shutting down", signal_number);
        impl.server->stop();
    });
    std::thread signal_thread([&] { signals_context.run(); });
    impl.server->wait();
    signals_context.stop();
    signal_thread.join();
    impl.password_hasher.reset();
    impl.db->close();
    log::app()->info("shut down cleanly");
    return {};
}

}  // namespace myelin::app
