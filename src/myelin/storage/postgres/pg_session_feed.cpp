#include "myelin/storage/postgres/pg_session_feed.hpp"

#include <charconv>
#include <string>
#include <utility>

namespace myelin::storage::pg {

namespace {

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

namespace {

ConnectionSettings feed_settings(ConnectionSettings settings) {
    settings.application_name += "-feed";
    return settings;
}

}  // namespace

PgSessionFeed::PgSessionFeed(ConnectionSettings settings)
    : listener_(feed_settings(std::move(settings)), std::string(kSessionChannel),
                "session change feed") {}

PgSessionFeed::~PgSessionFeed() { stop(); }

Result<void> PgSessionFeed::start(ChangeHandler on_change, GapHandler on_gap) {
    auto on_payload = [on_change = std::move(on_change)](std::string_view payload) {
        if (auto change = parse_session_change(payload)) on_change(*change);
    };
    return listener_.start(std::move(on_payload), std::move(on_gap));
}

void PgSessionFeed::stop() { listener_.stop(); }

}  // namespace myelin::storage::pg
