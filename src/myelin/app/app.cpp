#include "myelin/app/app.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "myelin/api/admin/routes.hpp"
#include "myelin/api/client/routes.hpp"
#include "myelin/api/dispatcher.hpp"
#include "myelin/api/metrics_dispatcher.hpp"
#include "myelin/api/router.hpp"
#include "myelin/app/open_database.hpp"
#include "myelin/auth/password_hasher.hpp"
#include "myelin/auth/server_secret.hpp"
#include "myelin/auth/sodium_init.hpp"
#include "myelin/auth/successor_seal.hpp"
#include "myelin/auth/token_cache.hpp"
#include "myelin/auth/token_hasher.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/events/signing_key.hpp"
#include "myelin/http/server.hpp"
#include "myelin/http/tls_context.hpp"
#include "myelin/service/account_service.hpp"
#include "myelin/service/activity_tracker.hpp"
#include "myelin/service/admin_service.hpp"
#include "myelin/service/device_service.hpp"
#include "myelin/service/housekeeping.hpp"
#include "myelin/service/rate_limiter.hpp"
#include "myelin/service/registration_tokens.hpp"
#include "myelin/service/revocation_listener.hpp"
#include "myelin/service/session_change_follower.hpp"
#include "myelin/service/session_service.hpp"
#include "myelin/service/shared_rate_limit_store.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/service/wake_relay.hpp"

namespace myelin::app {

struct App::Impl {
    Config config;
    SystemClock clock;
    std::unique_ptr<storage::Database> db;
    // Deletes old revocation log entries and security events on its own thread.
    std::unique_ptr<service::Housekeeping> housekeeping;
    std::unique_ptr<auth::ServerSecret> secret;
    std::unique_ptr<auth::TokenHasher> token_hasher;
    std::unique_ptr<auth::SuccessorSealer> sealer;
    // Signs the events of rooms (and, later, federation requests).
    std::unique_ptr<events::SigningKey> signing_key;
    auth::TokenCache cache;
    std::unique_ptr<auth::PasswordHasher> password_hasher;
    // Before the services and the dispatcher, which hold pointers to it.
    // In memory on SQLite; on PostgreSQL shared by every instance (SharedRateLimitStore).
    std::unique_ptr<service::RateLimitStore> rate_limit_store;
    service::SharedRateLimitStore* shared_rate_limits = nullptr;  // the store, when shared
    std::unique_ptr<service::RateLimiter> rate_limiter;
    std::unique_ptr<service::RegistrationTokens> registration_tokens;
    std::unique_ptr<service::UiaEngine> uia;
    std::unique_ptr<service::SessionService> sessions;
    std::unique_ptr<service::AccountService> accounts;
    // Last-seen tracking, written in batches by its own thread (declared before the dispatcher,
    // which holds a pointer to it).
    std::unique_ptr<service::ActivityTracker> activity;
    std::unique_ptr<service::DeviceService> devices;
    std::unique_ptr<service::ClientDataServices> client_data;
    std::unique_ptr<service::RoomService> rooms;
    // Wakes /sync long-polls; the services that commit what a user syncs notify it.
    service::UserNotifier notifier;
    std::unique_ptr<service::TypingService> typing;
    std::unique_ptr<service::ReceiptService> receipts;
    // Carries the notifier's wake-ups to and from the other instances (PostgreSQL
    // LISTEN/NOTIFY); null on SQLite. After the notifier, which calls it.
    std::unique_ptr<service::WakeRelay> wake_relay;
    std::unique_ptr<service::SyncService> sync;
    std::unique_ptr<api::Services> services;
    std::unique_ptr<service::AdminService> admin;  // the admin HTTP API's service
    api::Router router;
    std::unique_ptr<api::ClientDispatcher> dispatcher;
    std::unique_ptr<http::Server> server;
    // Follows the revocation log (revocations by the admin CLI or other instances).
    std::unique_ptr<service::RevocationListener> revocations;
    // Applies refreshes and revocations pushed by other instances (PostgreSQL LISTEN/NOTIFY);
    // null on SQLite (one server process per database).
    std::unique_ptr<service::SessionChangeFollower> session_changes;
    // The separate /metrics listener ([metrics]); null when disabled.
    std::unique_ptr<api::MetricsDispatcher> metrics_dispatcher;
    std::unique_ptr<http::Server> metrics_server;
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

App::~App() {
    if (!impl_) return;
    impl_->server.reset();
    impl_->metrics_server.reset();
    if (impl_->revocations) impl_->revocations->stop();
    if (impl_->session_changes) impl_->session_changes->stop();
    if (impl_->wake_relay) impl_->wake_relay->stop();
    if (impl_->shared_rate_limits) impl_->shared_rate_limits->stop();
    if (impl_->activity) impl_->activity->stop();
    if (impl_->housekeeping) impl_->housekeeping->stop();
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

// Loads [listen]'s certificate and key; the error starts "config key" (exit status 2).
Result<std::shared_ptr<http::TlsContext>> load_tls(const ListenConfig& listen) {
    auto context = http::TlsContext::load(listen.tls_certificate, listen.tls_private_key);
    if (!context) return context.error();
    log::app()->info("TLS certificate: {}", (*context)->summary());
    if ((*context)->expired()) {
        log::app()->warn(
            "the TLS certificate in {} is expired or not yet valid: clients will "
            "refuse it",
            listen.tls_certificate.string());
    }
    return context;
}

// SIGHUP: reads the certificate and key again. New connections use them; open connections keep
// theirs. A file that fails the checks leaves the running certificate in place (logged).
void reload_tls(const Config& config, http::Server& server) {
    if (!config.listen.tls()) {
        log::app()->info("SIGHUP received: nothing to reload (the listener speaks plain HTTP)");
        return;
    }
    log::app()->info("SIGHUP received: reloading the TLS certificate and key");
    auto context = load_tls(config.listen);
    if (!context) {
        log::app()->error("TLS certificate not reloaded, the previous one stays in use: {}",
                          context.error().message);
        return;
    }
    if (auto r = server.set_tls_context(std::move(*context)); !r) {
        log::app()->error("TLS certificate not reloaded: {}", r.error().message);
        return;
    }
    log::app()->info("TLS certificate reloaded; new connections use it");
}

}  // namespace

Result<std::unique_ptr<App>> App::create(Config config) {
    auth::ensure_sodium();
    auto impl = std::make_unique<Impl>();
    impl->config = std::move(config);
    const Config& c = impl->config;
    std::shared_ptr<http::TlsContext> tls;
    if (c.listen.tls()) {  // first: a bad certificate is a config error, nothing is created yet
        auto loaded = load_tls(c.listen);
        if (!loaded) return loaded.error();
        tls = std::move(*loaded);
    }
    if (auto r = ensure_private_dir(c.key_file.parent_path()); !r) return r.error();

    auto secret = auth::load_or_create_server_secret(c.key_file);
    if (!secret) return secret.error();
    impl->secret = std::make_unique<auth::ServerSecret>(std::move(*secret));
    impl->token_hasher = std::make_unique<auth::TokenHasher>(*impl->secret);
    impl->sealer = std::make_unique<auth::SuccessorSealer>(*impl->secret);
    if (auto r = ensure_private_dir(c.signing_key_file.parent_path()); !r) return r.error();
    auto signing_key = events::load_or_create_signing_key(c.signing_key_file);
    if (!signing_key) return signing_key.error();
    impl->signing_key = std::make_unique<events::SigningKey>(std::move(*signing_key));
    log::app()->info("event signing key {} loaded from {}", impl->signing_key->key_id(),
                     c.signing_key_file.string());

    auto db = open_database(c.database, DatabaseUser::kServer);
    if (!db) return db.error();
    impl->db = std::move(*db);
    impl->housekeeping =
        std::make_unique<service::Housekeeping>(*impl->db, impl->clock, c.housekeeping);

    auth::PasswordParams params;
    params.memory_kib = c.passwords.argon2_memory_kib;
    params.iterations = c.passwords.argon2_iterations;
    params.max_password_bytes = c.passwords.max_length;
    impl->password_hasher = std::make_unique<auth::PasswordHasher>(
        params, c.passwords.hashing_threads, c.passwords.hashing_queue);
    impl->registration_tokens =
        std::make_unique<service::RegistrationTokens>(*impl->db, impl->clock);
    impl->uia =
        std::make_unique<service::UiaEngine>(impl->clock, *impl->password_hasher, *impl->db,
                                             impl->registration_tokens.get(), c.server_name);
    impl->sessions = std::make_unique<service::SessionService>(
        *impl->db, *impl->token_hasher, *impl->sealer, impl->cache, impl->clock, c.tokens);
    impl->accounts = std::make_unique<service::AccountService>(
        *impl->db, *impl->password_hasher, *impl->sessions, *impl->uia, *impl->registration_tokens,
        c, impl->clock);
    auto exchange = impl->db->open_rate_limit_exchange();
    if (!exchange) return exchange.error();
    if (*exchange) {
        auto exact = impl->db->open_rate_limit_exchange();
        if (!exact) return exact.error();
        auto shared = std::make_unique<service::SharedRateLimitStore>(
            std::move(*exchange), std::move(*exact), impl->clock);
        impl->shared_rate_limits = shared.get();
        impl->rate_limit_store = std::move(shared);
    } else {
        impl->rate_limit_store = std::make_unique<service::InMemoryRateLimitStore>();
    }
    impl->rate_limiter = std::make_unique<service::RateLimiter>(
        c.rate_limits, c.server_name, *impl->rate_limit_store, impl->clock);
    impl->sessions->set_rate_limiter(impl->rate_limiter.get());
    impl->accounts->set_rate_limiter(impl->rate_limiter.get());
    impl->uia->set_rate_limiter(impl->rate_limiter.get());
    impl->devices = std::make_unique<service::DeviceService>(*impl->db, *impl->sessions);
    impl->client_data =
        std::make_unique<service::ClientDataServices>(*impl->db, impl->clock, c.server_name);
    impl->rooms = std::make_unique<service::RoomService>(*impl->db, impl->clock, c.server_name,
                                                         *impl->signing_key);
    impl->rooms->set_notifier(&impl->notifier);
    impl->client_data->account_data.set_notifier(&impl->notifier);
    impl->client_data->to_device.set_notifier(&impl->notifier);
    impl->client_data->push_rules.set_notifier(&impl->notifier);
    impl->client_data->keys.set_notifier(&impl->notifier);
    impl->typing = std::make_unique<service::TypingService>(*impl->db, impl->clock);
    impl->typing->set_notifier(&impl->notifier);
    impl->receipts = std::make_unique<service::ReceiptService>(*impl->db, impl->clock);
    impl->receipts->set_notifier(&impl->notifier);
    impl->sync = std::make_unique<service::SyncService>(*impl->db, impl->notifier, *impl->typing);
    impl->client_data->cross_signing.set_notifier(&impl->notifier);
    if (auto channel = impl->db->open_wake_channel()) {
        impl->wake_relay = std::make_unique<service::WakeRelay>(std::move(channel), impl->notifier);
        if (auto r = impl->wake_relay->start(); !r) return r.error();
    }
    impl->services = std::make_unique<api::Services>(
        api::Services{.config = c,
                      .sessions = *impl->sessions,
                      .accounts = *impl->accounts,
                      .uia = *impl->uia,
                      .registration_tokens = *impl->registration_tokens,
                      .devices = *impl->devices,
                      .client_data = *impl->client_data,
                      .rooms = *impl->rooms,
                      .sync = *impl->sync,
                      .typing = *impl->typing,
                      .receipts = *impl->receipts,
                      .signing_key = *impl->signing_key,
                      .clock = impl->clock});
    api::client::add_client_routes(impl->router, *impl->services);
    impl->admin = std::make_unique<service::AdminService>(*impl->db, *impl->sessions);
    api::admin::add_admin_routes(impl->router, *impl->services, *impl->admin);
    impl->dispatcher = std::make_unique<api::ClientDispatcher>(
        impl->router, *impl->sessions, c.limits.max_body_bytes, impl->rate_limiter.get());
    impl->activity = std::make_unique<service::ActivityTracker>(*impl->db, impl->clock,
                                                                c.devices.last_seen_flush);
    impl->dispatcher->set_activity_tracker(impl->activity.get());

    // Before warming: a revocation committed while the cache warms is still applied.
    impl->revocations = std::make_unique<service::RevocationListener>(*impl->db, impl->cache);
    if (auto r = impl->revocations->prime(); !r) return r.error();
    if (auto feed = impl->db->open_session_feed()) {
        impl->session_changes =
            std::make_unique<service::SessionChangeFollower>(std::move(feed), impl->cache);
        if (auto r = impl->session_changes->start(); !r) return r.error();
    }
    if (c.tokens.warm_cache_at_startup) {
        auto warmed = impl->sessions->warm_cache();
        if (!warmed) return warmed.error();
        log::app()->info("token cache warmed with {} access tokens", *warmed);
    }
    // Without warming, the cache fills on first use (each load checks the epoch, so a change
    // pushed meanwhile is never overwritten); with it, changes received during the warm-up are
    // applied again now.
    if (impl->session_changes) impl->session_changes->warmed();

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
    options.limits.max_connections_per_address = c.limits.max_connections_per_ip;
    // Counted like the rate limiter's per-IP buckets (IPv6 by /64); a trusted proxy, which
    // brings every client behind it, is not capped.
    options.limits.address_key =
        [proxies = service::TrustedProxies(c.rate_limits.trusted_proxies)](std::string_view peer) {
            const std::string ip = service::normalize_ip(peer);
            if (ip.empty() || proxies.contains(ip)) return std::string();
            return service::ip_bucket_key(ip);
        };
    options.limits.shutdown_grace = c.limits.shutdown_grace;
    options.tls = std::move(tls);
    impl->server = std::make_unique<http::Server>(options, *impl->dispatcher);
    if (c.metrics.enabled) {
        auth::TokenCache* cache = &impl->cache;
        impl->metrics_dispatcher = std::make_unique<api::MetricsDispatcher>([cache] {
            static metrics::Gauge& tokens = metrics::gauge(
                "myelin_token_cache_tokens", "Access tokens in the in-memory token cache.");
            static metrics::Gauge& cached_sessions = metrics::gauge(
                "myelin_token_cache_sessions", "Sessions in the in-memory token cache.");
            tokens.set(static_cast<std::int64_t>(cache->token_count()));
            cached_sessions.set(static_cast<std::int64_t>(cache->session_count()));
        });
        http::ServerOptions metrics_options;
        metrics_options.address = c.metrics.address;
        metrics_options.port = c.metrics.port;
        metrics_options.threads = 1;
        metrics_options.access_log = false;
        metrics_options.limits.max_connections = 64;
        metrics_options.limits.shutdown_grace = std::chrono::milliseconds(1000);
        impl->metrics_server =
            std::make_unique<http::Server>(metrics_options, *impl->metrics_dispatcher);
    }
    return std::unique_ptr<App>(new App(std::move(impl)));
}

Result<void> App::run() {
    auto& impl = *impl_;
    boost::asio::io_context signals_context;
    boost::asio::signal_set signals(signals_context, SIGINT, SIGTERM);
    // Caught whether or not TLS is on: SIGHUP's default action would end the server.
    boost::asio::signal_set hangups(signals_context, SIGHUP);
    if (impl.metrics_server) {
        if (auto r = impl.metrics_server->start(); !r) {
            return errors::internal(
                "cannot start the metrics listener on " + impl.config.metrics.address + ":" +
                std::to_string(impl.config.metrics.port) + ": " + r.error().message);
        }
        log::app()->info("metrics on http://{}:{}/metrics", impl.config.metrics.address,
                         impl.metrics_server->port());
    }
    if (auto r = impl.server->start(); !r) {
        if (impl.metrics_server) {
            impl.metrics_server->stop();
            impl.metrics_server->wait();
        }
        return r.error();
    }
    impl.revocations->start();
    if (impl.shared_rate_limits) impl.shared_rate_limits->start();
    impl.activity->start();
    impl.housekeeping->start();
    log::app()->info("myelin {} serving {} on {}://{}:{} (storage: {})", MYELIN_VERSION,
                     impl.config.server_name, impl.config.listen.tls() ? "https" : "http",
                     impl.config.listen.address, impl.server->port(), impl.db->backend_name());
    signals.async_wait([&](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
        log::app()->info("signal {} received: shutting down", signal_number);
        impl.server->stop();
        impl.notifier.shutdown();  // /sync long-polls answer now instead of at their timeout
        impl.typing->shutdown();   // typing timeouts would keep the network threads running
        if (impl.metrics_server) impl.metrics_server->stop();
    });
    std::function<void(const boost::system::error_code&, int)> on_hangup =
        [&](const boost::system::error_code& ec, int) {
            if (ec) return;
            reload_tls(impl.config, *impl.server);
            hangups.async_wait(on_hangup);
        };
    hangups.async_wait(on_hangup);
    std::thread signal_thread([&] { signals_context.run(); });
    impl.server->wait();
    if (impl.metrics_server) impl.metrics_server->wait();
    impl.revocations->stop();
    if (impl.session_changes) impl.session_changes->stop();
    if (impl.wake_relay) impl.wake_relay->stop();
    if (impl.shared_rate_limits) impl.shared_rate_limits->stop();
    impl.activity->stop();  // after the drain: the last requests' sightings are written too
    impl.housekeeping->stop();
    signals_context.stop();
    signal_thread.join();
    impl.password_hasher.reset();
    impl.db->close();
    log::app()->info("shut down cleanly");
    return {};
}

}  // namespace myelin::app
