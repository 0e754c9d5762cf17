#include "myelin/service/revocation_listener.hpp"

#include <utility>
#include <vector>

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

constexpr int kBatch = 1000;  // entries (or sessions, when resyncing) read per query

metrics::Counter& resyncs_counter() {
    static metrics::Counter& c =
        metrics::counter("myelin_revocation_log_resyncs_total",
                         "Times the revocation listener fell behind pruned log entries and "
                         "re-applied every revoked session instead.");
    return c;
}

// One poll: the entries after the position, and the pruned-through mark of the same snapshot.
struct LogPage {
    std::int64_t pruned_through = 0;
    std::vector<storage::RevocationRecord> entries;
};

}  // namespace

RevocationListener::RevocationListener(storage::Database& db, auth::TokenCache& cache,
                                       std::chrono::milliseconds interval)
    : db_(db), cache_(cache), interval_(interval) {
    (void)resyncs_counter();  // present at zero from start-up
}

RevocationListener::~RevocationListener() { stop(); }

Result<void> RevocationListener::prime() {
    auto latest = storage::read_sync<std::int64_t>(
        db_, [](storage::ReadTxn& txn) { return txn.latest_revocation_id(); });
    if (!latest) return latest.error();
    std::lock_guard lock(mu_);
    last_id_ = *latest;
    return {};
}

void RevocationListener::start() {
    if (thread_.joinable()) return;
    {
        std::lock_guard lock(mu_);
        stopping_ = false;
    }
    thread_ = std::thread([this] { run(); });
}

void RevocationListener::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::int64_t RevocationListener::last_id() const {
    std::lock_guard lock(mu_);
    return last_id_;
}

bool RevocationListener::stopping() const {
    std::lock_guard lock(mu_);
    return stopping_;
}

Result<std::size_t> RevocationListener::poll_once() {
    std::size_t applied = 0;
    for (;;) {
        const std::int64_t after = last_id();
        auto page =
            storage::read_sync<LogPage>(db_, [after](storage::ReadTxn& txn) -> Result<LogPage> {
                LogPage out;
                auto pruned = txn.revocation_log_pruned_through();
                if (!pruned) return pruned.error();
                out.pruned_through = *pruned;
                auto entries = txn.revocations_since(after, kBatch);
                if (!entries) return entries.error();
                out.entries = std::move(*entries);
                return out;
            });
        if (!page) return page.error();
        // Ids are not dense (a backend may skip some), so "the next id is missing" proves
        // nothing; the mark says exactly whether anything after our position was deleted.
        if (page->pruned_through > after) {
            auto resynced = resync();
            if (!resynced) return resynced.error();
            applied += *resynced;
            if (stopping()) return applied;
            continue;
        }
        for (const auto& entry : page->entries) {
            cache_.apply_logged_revocation(entry.session_id, entry.reason);
            ++applied;
        }
        if (!page->entries.empty()) {
            std::lock_guard lock(mu_);
            last_id_ = page->entries.back().id;
        }
        if (page->entries.size() < static_cast<std::size_t>(kBatch)) return applied;
    }
}

Result<std::size_t> RevocationListener::resync() {
    // The position first: a revocation committed during the scan has a newer id and is polled
    // afterwards; one committed before it is in the sessions table the scan reads.
    auto latest = storage::read_sync<std::int64_t>(
        db_, [](storage::ReadTxn& txn) { return txn.latest_revocation_id(); });
    if (!latest) return latest.error();
    log::app()->warn(
        "revocation log: entries after id {} were pruned before they were applied; "
        "re-applying every revoked session",
        last_id());
    std::size_t applied = 0;
    std::int64_t after_session = 0;
    for (;;) {
        if (stopping()) return applied;  // position kept: the next start resyncs again
        auto page = storage::read_sync<std::vector<storage::SessionRecord>>(
            db_, [after_session](storage::ReadTxn& txn) {
                return txn.revoked_sessions_after(after_session, kBatch);
            });
        if (!page) return page.error();
        for (const auto& session : *page) {
            cache_.apply_logged_revocation(session.session_id, session.revoked_reason);
            ++applied;
        }
        if (page->size() < static_cast<std::size_t>(kBatch)) break;
        after_session = page->back().session_id;
    }
    {
        std::lock_guard lock(mu_);
        last_id_ = *latest;
    }
    resyncs_counter().inc();
    log::app()->info("revocation log: resynced; {} revoked sessions re-applied, reading from id {}",
                     applied, *latest);
    return applied;
}

void RevocationListener::run() {
    bool failing = false;
    for (;;) {
        {
            std::unique_lock lock(mu_);
            wake_.wait_for(lock, interval_, [this] { return stopping_; });
            if (stopping_) return;
        }
        try {
            auto applied = poll_once();
            if (!applied) {
                // Log once per outage, not every 200 ms; retry on the next tick.
                if (!failing) {
                    log::app()->warn("revocation log: cannot read: {}", applied.error().message);
                }
                failing = true;
                continue;
            }
            if (failing) log::app()->info("revocation log: reading again");
            failing = false;
            if (*applied > 0) {
                log::app()->debug("revocation log: applied {} revocations", *applied);
            }
        } catch (const std::exception& e) {
            log::app()->error("revocation log: poll failed: {}", e.what());
        }
    }
}

}  // namespace myelin::service
