#pragma once

// Last-seen tracking for devices (GET /devices: last_seen_ts, last_seen_ip). The dispatcher calls
// touch() on every authenticated request; it only updates an in-memory entry per device (never
// per token, never a storage call). A background thread writes the newest sighting of each
// device in one write job per interval, at most `max_batch` rows per job, oldest sightings first
// (the rest wait for the next interval), so the write rate stays bounded however busy the
// server is. stop() writes whatever is left.
// Thread-safety: touch(), flush() and pending() may be called concurrently from any thread;
// start() and stop() from one controlling thread.

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "myelin/auth/token_cache.hpp"
#include "myelin/core/clock.hpp"
#include "myelin/core/error.hpp"
#include "myelin/storage/database.hpp"

namespace myelin::service {

// One device's newest sighting, as it will be written.
struct DeviceSighting {
    std::string user_id;
    std::string device_id;
    std::string ip;
    std::int64_t ts = 0;
};

class ActivityTracker {
public:
    static constexpr std::size_t kDefaultMaxBatch = 5'000;

    // `db` and `clock` must outlive the tracker. `flush_interval` (> 0) is the time between two
    // background writes; `max_batch` (> 0) bounds the rows of one write.
    ActivityTracker(storage::Database& db, const Clock& clock,
                    std::chrono::milliseconds flush_interval,
                    std::size_t max_batch = kDefaultMaxBatch);
    // Calls stop().
    ~ActivityTracker();
    ActivityTracker(const ActivityTracker&) = delete;
    ActivityTracker& operator=(const ActivityTracker&) = delete;

    // Records that the device was used at `now_ms` from `ip`. Coalesces: a device has one
    // pending entry holding its newest sighting (an older `now_ms` than the pending one changes
    // nothing). Never blocks on I/O; allocates only for a device not yet pending.
    void touch(std::string_view user_id, std::string_view device_id, std::string_view ip,
               std::int64_t now_ms);
    // The same at the tracker's clock's current time.
    void touch(std::string_view user_id, std::string_view device_id, std::string_view ip);

    // The request path's form: records a use of `session`'s device from `ip` unless the same
    // session was already recorded from the same address less than resolution() ago (then the
    // sighting changes nothing worth a lock and a hash lookup). last_seen_ts may therefore lag
    // the real last request by up to resolution(); last_seen_ip never misses a change.
    void touch_session(auth::CachedSession& session, std::string_view ip);

    // The coarsest last_seen_ts step: min(flush interval, 1 s).
    std::chrono::milliseconds resolution() const { return resolution_; }

    // Starts the background thread that calls flush() every interval. Call once.
    void start();
    // Stops the background thread (if started), then writes every pending sighting in one job.
    // Blocks until that write committed or failed (then the sightings are lost, with a warning).
    // Idempotent: only the first call writes. Call before closing `db`.
    void stop();

    // Writes up to `max_batch` pending sightings (the oldest first; all of them when `all`) in
    // ONE write job, and blocks until it committed. Returns how many rows it handed to storage.
    // On a storage error the sightings go back to pending (a newer one wins) and the error is
    // returned. Runs on the calling thread: never call it from a network thread.
    Result<std::size_t> flush(bool all = false);

    // Devices with a sighting not yet written.
    std::size_t pending() const;

private:
    // Views into the strings of a list node (nodes never move, and a node's user and device
    // never change while it is indexed).
    struct KeyView {
        std::string_view user_id;
        std::string_view device_id;
        bool operator==(const KeyView&) const = default;
    };
    struct KeyHash {
        std::size_t operator()(const KeyView& k) const noexcept;
    };
    // Pending sightings in the order their device first became pending (FIFO, so a device is
    // never starved by busier ones), indexed by device.
    struct Shard {
        mutable std::mutex mu;
        std::list<DeviceSighting> order;  // guarded by mu
        std::unordered_map<KeyView, std::list<DeviceSighting>::iterator, KeyHash>
            index;  // guarded by mu
    };
    static constexpr std::size_t kShards = 16;

    Shard& shard_for(const KeyView& key);
    // Moves up to `limit` sightings out of the shards, round-robin from a rotating start.
    std::vector<DeviceSighting> take(std::size_t limit);
    void run();

    storage::Database& db_;
    const Clock& clock_;
    const std::chrono::milliseconds interval_;
    const std::chrono::milliseconds resolution_;
    const std::size_t max_batch_;
    std::array<Shard, kShards> shards_;
    std::size_t next_shard_ = 0;  // where take() starts; guarded by flush_mu_
    std::mutex flush_mu_;         // one flush at a time

    std::mutex run_mu_;
    std::condition_variable wake_;
    bool stopping_ = false;  // guarded by run_mu_
    bool stopped_ = false;   // guarded by run_mu_; stop() has run
    std::thread thread_;
};

}  // namespace myelin::service
