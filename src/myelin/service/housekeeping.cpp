#include "myelin/service/housekeeping.hpp"

#include <exception>

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/service/uia.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

metrics::Counter& deleted_rows(const char* table) {
    return metrics::counter("myelin_housekeeping_deleted_rows_total",
                            "Rows deleted by housekeeping because they outlived their retention.",
                            {{"table", table}});
}

constexpr const char* kRevocationLog = "revocation_log";
constexpr const char* kSecurityEvents = "security_events";
constexpr const char* kUiaSessions = "uia_sessions";
constexpr const char* kToDeviceTxns = "to_device_txns";
constexpr const char* kDeviceListChanges = "device_list_changes";

}  // namespace

Housekeeping::Housekeeping(storage::Database& db, const Clock& clock,
                           const HousekeepingConfig& config, int max_batch)
    : db_(db), clock_(clock), config_(config), max_batch_(max_batch) {
    (void)deleted_rows(kRevocationLog);
    (void)deleted_rows(kSecurityEvents);
    (void)deleted_rows(kUiaSessions);
    (void)deleted_rows(kToDeviceTxns);
    (void)deleted_rows(kDeviceListChanges);
}

Housekeeping::~Housekeeping() { stop(); }

bool Housekeeping::stopping() const {
    std::lock_guard lock(run_mu_);
    return stopping_;
}

template <typename Prune>
Result<std::int64_t> Housekeeping::prune_in_batches(Prune prune, const char* table) {
    metrics::Counter& counter = deleted_rows(table);
    const int limit = max_batch_;
    std::int64_t total = 0;
    for (;;) {
        auto deleted = storage::write_sync<std::int64_t>(
            db_, [&prune, limit](storage::WriteTxn& txn) { return prune(txn, limit); });
        if (!deleted) return deleted.error();
        total += *deleted;
        counter.inc(static_cast<std::uint64_t>(*deleted));
        // A short batch means nothing old is left; otherwise go on unless asked to stop.
        if (*deleted < limit || stopping()) return total;
    }
}

Result<HousekeepingCounts> Housekeeping::run_once() {
    std::lock_guard pass(pass_mu_);
    const std::int64_t now = clock_.now_ms();
    HousekeepingCounts counts;

    const std::int64_t log_cutoff = now - config_.revocation_log_retention.count();
    auto log_rows = prune_in_batches(
        [log_cutoff](storage::WriteTxn& txn, int limit) {
            return txn.prune_revocation_log(log_cutoff, limit);
        },
        kRevocationLog);
    if (!log_rows) return log_rows.error();
    counts.revocation_log = *log_rows;

    if (config_.security_event_retention.count() > 0 && !stopping()) {
        const std::int64_t event_cutoff = now - config_.security_event_retention.count();
        auto event_rows = prune_in_batches(
            [event_cutoff](storage::WriteTxn& txn, int limit) {
                return txn.prune_security_events(event_cutoff, limit);
            },
            kSecurityEvents);
        if (!event_rows) return event_rows.error();
        counts.security_events = *event_rows;
    }

    if (!stopping()) {
        auto uia_rows =
            prune_in_batches([now](storage::WriteTxn& txn,
                                   int limit) { return UiaEngine::prune_expired(txn, now, limit); },
                             kUiaSessions);
        if (!uia_rows) return uia_rows.error();
        counts.uia_sessions = *uia_rows;
    }

    if (!stopping()) {
        const std::int64_t txn_cutoff =
            now -
            std::chrono::duration_cast<std::chrono::milliseconds>(kToDeviceTxnRetention).count();
        auto txn_rows = prune_in_batches(
            [txn_cutoff](storage::WriteTxn& txn, int limit) {
                return txn.prune_to_device_txns(txn_cutoff, limit);
            },
            kToDeviceTxns);
        if (!txn_rows) return txn_rows.error();
        counts.to_device_txns = *txn_rows;
    }

    if (!stopping()) {
        auto change_rows = prune_in_batches(
            [](storage::WriteTxn& txn, int limit) {
                return txn.prune_superseded_device_list_changes(limit);
            },
            kDeviceListChanges);
        if (!change_rows) return change_rows.error();
        counts.device_list_changes = *change_rows;
    }
    return counts;
}

void Housekeeping::start() {
    std::lock_guard lock(run_mu_);
    if (thread_.joinable() || stopping_) return;
    thread_ = std::thread([this] { run(); });
}

void Housekeeping::stop() {
    {
        std::lock_guard lock(run_mu_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Housekeeping::run() {
    bool failing = false;
    for (;;) {
        try {
            auto counts = run_once();
            if (!counts) {
                // Once per outage, not every interval; the next pass retries.
                if (!failing) {
                    log::app()->warn("housekeeping: pruning failed ({}); will retry",
                                     counts.error().message);
                }
                failing = true;
            } else {
                if (failing) log::app()->info("housekeeping: pruning again");
                failing = false;
                const bool logs = counts->revocation_log > 0 || counts->security_events > 0;
                if (logs) {
                    log::app()->info(
                        "housekeeping: deleted {} revocation log entries and {} security events",
                        counts->revocation_log, counts->security_events);
                }
                // Routine on a busy server: expired UIA sessions are only worth a debug line.
                if (counts->uia_sessions > 0) {
                    log::app()->debug("housekeeping: deleted {} expired UIA sessions",
                                      counts->uia_sessions);
                }
                const std::int64_t client_rows =
                    counts->to_device_txns + counts->device_list_changes;
                if (client_rows > 0) {
                    log::app()->debug(
                        "housekeeping: deleted {} old to-device transactions and {} superseded "
                        "device-list changes",
                        counts->to_device_txns, counts->device_list_changes);
                }
                if (!logs && counts->uia_sessions == 0 && client_rows == 0) {
                    log::app()->debug("housekeeping: nothing to delete");
                }
            }
        } catch (const std::exception& e) {
            log::app()->error("housekeeping: pass threw: {}", e.what());
        }
        std::unique_lock lock(run_mu_);
        if (wake_.wait_for(lock, config_.interval, [this] { return stopping_; })) return;
    }
}

}  // namespace myelin::service
