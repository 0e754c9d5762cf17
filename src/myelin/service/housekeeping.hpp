#pragma once

// Housekeeping: a background thread that deletes rows which would otherwise pile up forever,
// every `[housekeeping] interval`: revocation log entries older than revocation_log_retention,
// security events older than security_event_retention (0: kept), expired UIA sessions
// (UiaEngine::prune_expired, which releases the registration token reservations they held),
// to-device transaction records older than kToDeviceTxnRetention and device-list changes
// superseded by a later change of the same device (answers from any sync position stay the
// same). Deletes
// go in write jobs of at most `max_batch` rows each, so the single writer is never held long; a
// backlog is worked off one job after another. Used by the App; tests call run_once() directly.
// Thread-safety: run_once() may be called from any non-network thread (one pass at a time);
// start() and stop() from one controlling thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "myelin/core/clock.hpp"
#include "myelin/core/config.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// Rows one housekeeping pass deleted, per table.
struct HousekeepingCounts {
    std::int64_t revocation_log = 0;
    std::int64_t security_events = 0;
    std::int64_t uia_sessions = 0;
    std::int64_t to_device_txns = 0;
    std::int64_t device_list_changes = 0;
};

class Housekeeping {
public:
    static constexpr int kDefaultMaxBatch = 10'000;
    // How long a `PUT /sendToDevice/{type}/{txnId}` retry is recognised as one (Synapse keeps
    // its transaction cache for 30 minutes).
    static constexpr std::chrono::hours kToDeviceTxnRetention{24};

    // `db` and `clock` must outlive this object. `config` is copied; its interval must be > 0 and
    // its revocation_log_retention > 0 (load_config enforces both). `max_batch` (> 0) bounds the
    // rows deleted by one write job. Registers myelin_housekeeping_deleted_rows_total{table} for
    // every table, so they exist at zero from start-up.
    Housekeeping(storage::Database& db, const Clock& clock, const HousekeepingConfig& config,
                 int max_batch = kDefaultMaxBatch);
    // Calls stop().
    ~Housekeeping();
    Housekeeping(const Housekeeping&) = delete;
    Housekeeping& operator=(const Housekeeping&) = delete;

    // Starts the thread: one pass at once, then one every interval. Call once.
    void start();
    // Stops the thread (a running pass ends after its current write job) and joins it. Blocks
    // for at most one write job. Idempotent; call before closing `db`.
    void stop();

    // One pass: deletes every row older than its table's retention (for UIA sessions: expired;
    // for device-list changes: superseded) as of the clock's time now,
    // in write jobs of at most max_batch rows, blocking until the last one committed. Returns
    // the rows deleted; on a storage error returns it (batches committed before it stay deleted
    // and counted in the metric). Ends early, with what it deleted so far, once stop() was
    // called. Never call it from a network thread.
    Result<HousekeepingCounts> run_once();

private:
    // Deletes rows of one table in batches; `prune(txn, limit)` deletes up to `limit` rows.
    template <typename Prune>
    Result<std::int64_t> prune_in_batches(Prune prune, const char* table);
    bool stopping() const;
    void run();

    storage::Database& db_;
    const Clock& clock_;
    const HousekeepingConfig config_;
    const int max_batch_;
    std::mutex pass_mu_;  // one pass at a time

    mutable std::mutex run_mu_;
    std::condition_variable wake_;
    bool stopping_ = false;  // guarded by run_mu_
    std::thread thread_;
};

}  // namespace myelin::service
