#include "myelin/storage/postgres/pg_listener.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include "myelin/core/log.hpp"

namespace myelin::storage::pg {

namespace {

// How long one wait on the socket lasts: bounds how long stop() takes.
constexpr int kWaitMs = 100;
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};

}  // namespace

PgListener::PgListener(ConnectionSettings settings, std::string channel, std::string what)
    : settings_(std::move(settings)), channel_(std::move(channel)), what_(std::move(what)) {}

PgListener::~PgListener() { stop(); }

Result<std::unique_ptr<Connection>> PgListener::connect_and_listen() const {
    auto conn = Connection::open(settings_);
    if (!conn) return conn.error();
    const std::string listen = "LISTEN " + channel_;
    if (auto r = (*conn)->exec(listen.c_str(), "listening for " + what_); !r) return r.error();
    return conn;
}

Result<void> PgListener::start(PayloadHandler on_payload, GapHandler on_gap) {
    on_payload_ = std::move(on_payload);
    on_gap_ = std::move(on_gap);
    auto conn = connect_and_listen();
    if (!conn) return conn.error();
    thread_ = std::thread([this, c = std::move(*conn)]() mutable { run(std::move(c)); });
    return {};
}

void PgListener::stop() {
    stopping_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
}

void PgListener::run(std::unique_ptr<Connection> conn) {
    const auto on_note = [this](std::string_view channel, std::string_view payload) {
        if (channel == channel_) on_payload_(payload);
    };
    auto backoff = kFirstBackoff;
    while (!stopping_.load(std::memory_order_acquire)) {
        if (!conn) {
            auto reopened = connect_and_listen();
            if (!reopened) {
                // Sleep in short steps so that stop() is not held up by the back-off.
                const auto until = std::chrono::steady_clock::now() + backoff;
                while (!stopping_.load(std::memory_order_acquire) &&
                       std::chrono::steady_clock::now() < until) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(kWaitMs));
                }
                backoff = std::min(backoff * 2, kMaxBackoff);
                continue;
            }
            conn = std::move(*reopened);
            backoff = kFirstBackoff;
            myelin::log::app()->info("postgresql: {} reconnected", what_);
            if (on_gap_) on_gap_();
            continue;
        }
        auto waited = conn->wait_for_notifications(kWaitMs, on_note);
        if (!waited) {
            myelin::log::app()->warn("postgresql: the {} lost its connection; reconnecting", what_);
            conn.reset();
        }
    }
}

}  // namespace myelin::storage::pg
