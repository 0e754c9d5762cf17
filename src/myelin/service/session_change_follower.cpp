#include "myelin/service/session_change_follower.hpp"

#include <utility>

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"

namespace myelin::service {
namespace {

metrics::Counter& changes_counter() {
    static metrics::Counter& c = metrics::counter(
        "myelin_session_feed_changes_total",
        "Session changes (revocations, generation advances) received from the database's "
        "session feed and applied to the token cache.");
    return c;
}

metrics::Counter& gaps_counter() {
    static metrics::Counter& c = metrics::counter(
        "myelin_session_feed_gaps_total",
        "Times the session feed reconnected after losing changes, and the token cache was "
        "cleared.");
    return c;
}

}  // namespace

SessionChangeFollower::SessionChangeFollower(std::unique_ptr<storage::SessionFeed> feed,
                                             auth::TokenCache& cache)
    : feed_(std::move(feed)), cache_(cache) {
    (void)changes_counter();  // present at zero from start-up
    (void)gaps_counter();
}

SessionChangeFollower::~SessionChangeFollower() { stop(); }

Result<void> SessionChangeFollower::start() {
    return feed_->start([this](const storage::SessionChange& c) { on_change(c); },
                        [this] { on_gap(); });
}

void SessionChangeFollower::warmed() {
    std::vector<storage::SessionChange> replay;
    {
        std::lock_guard lock(mu_);
        warming_ = false;
        replay.swap(during_warm_);
    }
    for (const auto& change : replay) apply(change);
}

void SessionChangeFollower::stop() {
    if (feed_) feed_->stop();
}

void SessionChangeFollower::on_change(const storage::SessionChange& change) {
    {
        std::lock_guard lock(mu_);
        if (warming_) during_warm_.push_back(change);
    }
    apply(change);
    changes_counter().inc();
}

void SessionChangeFollower::on_gap() {
    gaps_counter().inc();
    log::app()->warn(
        "session changes may have been missed while the feed was down; the token "
        "cache was cleared (tokens are checked against storage on next use)");
    cache_.clear();
}

void SessionChangeFollower::apply(const storage::SessionChange& change) {
    switch (change.kind) {
        case storage::SessionChange::Kind::kRevoked:
            cache_.apply_logged_revocation(change.session_id, change.reason);
            break;
        case storage::SessionChange::Kind::kAdvanced:
            cache_.apply_logged_advance(change.session_id, change.current_generation,
                                        change.used_generation);
            break;
    }
}

}  // namespace myelin::service
