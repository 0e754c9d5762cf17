#include "myelin/storage/postgres/pg_session_feed.hpp"

#include <charconv>
#include <chrono>
#include <utility>

#include "myelin/core/log.hpp"

namespace myelin::storage::pg {

namespace {

// How long one wait on the socket lasts: bounds how long stop() takes.
constexpr int kWaitMs = 100;
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};

// Reads one space-separated integer from the front of `rest` and advances past it.
bool take_int(std::string_view& rest, std::int64_t& out) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const char* begin = rest.data();
    const char* end = rest.data() + rest.size();
    auto [ptr, ec] = std::from_chars(begin, end, out);
    if (ec != std::errc() || ptr == begin) return false;
    rest.remove_prefix(static_cast<std::size_t>(ptr - begin));
    return true;
}

}  // namespace

std::optional<SessionChange> parse_session_change(std::string_view payload) {
    if (payload.size() < 3 || payload[1] != ' ') return std::nullopt;
    const char kind = payload[0];
    std::string_view rest = payload.substr(2);
    SessionChange change;
    if (!take_int(rest, change.session_id)) return std::nullopt;
    if (kind == 'r') {
        std::int64_t reason = 0;
        if (!take_int(rest, reason) || !rest.empty()) return std::nullopt;
        // A reason this build does not know (a newer release's) still ends the session.
        if (reason <= 0 || reason > 1000) return std::nullopt;
        change.kind = SessionChange::Kind::kRevoked;
        change.reason = static_cast<RevokeReason>(reason);
        return change;
    }
    if (kind == 'a') {
        if (!take_int(rest, change.current_generation) || !take_int(rest, change.used_generation) ||
            !rest.empty()) {
            return std::nullopt;
        }
        change.kind = SessionChange::Kind::kAdvanced;
        return change;
    }
    return std::nullopt;
}

PgSessionFeed::PgSessionFeed(ConnectionSettings settings) : settings_(std::move(settings)) {
    settings_.application_name += "-feed";
}

PgSessionFeed::~PgSessionFeed() { stop(); }

Result<std::unique_ptr<Connection>> PgSessionFeed::connect_and_listen() const {
    auto conn = Connection::open(settings_);
    if (!conn) return conn.error();
    const std::string listen = "LISTEN " + std::string(kSessionChannel);
    if (auto r = (*conn)->exec(listen.c_str(), "listening for session changes"); !r) {
        return r.error();
    }
    return conn;
}

Result<void> PgSessionFeed::start(ChangeHandler on_change, GapHandler on_gap) {
    on_change_ = std::move(on_change);
    on_gap_ = std::move(on_gap);
    auto conn = connect_and_listen();
    if (!conn) return conn.error();
    thread_ = std::thread([this, c = std::move(*conn)]() mutable { run(std::move(c)); });
    return {};
}

void PgSessionFeed::stop() {
    stopping_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
}

void PgSessionFeed::run(std::unique_ptr<Connection> conn) {
    const auto on_note = [this](std::string_view channel, std::string_view payload) {
        if (channel != kSessionChannel) return;
        if (auto change = parse_session_change(payload)) on_change_(*change);
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
            myelin::log::app()->info("postgresql: session change feed reconnected");
            if (on_gap_) on_gap_();
            continue;
        }
        auto waited = conn->wait_for_notifications(kWaitMs, on_note);
        if (!waited) {
            myelin::log::app()->warn(
                "postgresql: the session change feed lost its connection; reconnecting");
            conn.reset();
        }
    }
}

}  // namespace myelin::storage::pg
