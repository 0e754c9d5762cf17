#include "myelin/service/activity_tracker.hpp"

#include <algorithm>
#include <utility>

#include "myelin/core/log.hpp"
#include "myelin/core/metrics.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

struct ActivityMetrics {
    metrics::Counter& rows = metrics::counter(
        "myelin_device_activity_rows_written_total",
        "Device last-seen rows handed to storage by the activity tracker's batched writes");
    metrics::Gauge& pending =
        metrics::gauge("myelin_device_activity_pending",
                       "Devices whose last sighting has not been written yet (after a flush)");
};

ActivityMetrics& activity_metrics() {
    static ActivityMetrics m;
    return m;
}

}  // namespace

std::size_t ActivityTracker::KeyHash::operator()(const KeyView& k) const noexcept {
    const std::size_t a = std::hash<std::string_view>{}(k.user_id);
    const std::size_t b = std::hash<std::string_view>{}(k.device_id);
    return a ^ (b + 0x9E3779B97F4A7C15ULL + (a << 6) + (a >> 2));
}

ActivityTracker::ActivityTracker(storage::Database& db, const Clock& clock,
                                 std::chrono::milliseconds flush_interval, std::size_t max_batch)
    : db_(db),
      clock_(clock),
      interval_(std::max(flush_interval, std::chrono::milliseconds(1))),
      resolution_(std::min(interval_, std::chrono::milliseconds(1000))),
      max_batch_(std::max<std::size_t>(max_batch, 1)) {
    (void)activity_metrics();
}

ActivityTracker::~ActivityTracker() { stop(); }

ActivityTracker::Shard& ActivityTracker::shard_for(const KeyView& key) {
    // The map hashes the whole key again; a different mix picks the shard, so one shard's map
    // does not see only a fraction of the hash space in its low bits.
    const std::size_t h = KeyHash{}(key);
    return shards_[(h >> 23) % kShards];
}

void ActivityTracker::touch(std::string_view user_id, std::string_view device_id,
                            std::string_view ip, std::int64_t now_ms) {
    const KeyView key{user_id, device_id};
    Shard& shard = shard_for(key);
    std::lock_guard lock(shard.mu);
    auto found = shard.index.find(key);
    if (found != shard.index.end()) {
        DeviceSighting& s = *found->second;
        if (now_ms >= s.ts) {
            s.ts = now_ms;
            if (s.ip != ip) s.ip.assign(ip.data(), ip.size());
        }
        return;
    }
    shard.order.push_back(
        DeviceSighting{std::string(user_id), std::string(device_id), std::string(ip), now_ms});
    auto it = std::prev(shard.order.end());
    shard.index.emplace(KeyView{it->user_id, it->device_id}, it);
}

void ActivityTracker::touch(std::string_view user_id, std::string_view device_id,
                            std::string_view ip) {
    touch(user_id, device_id, ip, clock_.now_ms());
}

void ActivityTracker::touch_session(auth::CachedSession& session, std::string_view ip) {
    const std::int64_t now = clock_.now_ms();
    const std::uint64_t ip_hash = std::hash<std::string_view>{}(ip);
    const std::int64_t noted = session.activity_noted_ms.load(std::memory_order_relaxed);
    if (now >= noted && now - noted < resolution_.count() &&
        session.activity_ip_hash.load(std::memory_order_relaxed) == ip_hash) {
        return;
    }
    // Racing requests of one session may both get here; both touches are correct, one is
    // merely redundant.
    session.activity_noted_ms.store(now, std::memory_order_relaxed);
    session.activity_ip_hash.store(ip_hash, std::memory_order_relaxed);
    touch(session.user_id(), session.device_id, ip, now);
}

std::size_t ActivityTracker::pending() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
        std::lock_guard lock(shard.mu);
        n += shard.order.size();
    }
    return n;
}

std::vector<DeviceSighting> ActivityTracker::take(std::size_t limit) {
    std::vector<DeviceSighting> out;
    auto take_from = [&](Shard& shard, std::size_t quota) {
        std::lock_guard lock(shard.mu);
        while (quota > 0 && !shard.order.empty() && out.size() < limit) {
            auto& front = shard.order.front();
            shard.index.erase(KeyView{front.user_id, front.device_id});
            out.push_back(std::move(front));
            shard.order.pop_front();
            --quota;
        }
    };
    // A fair share from every shard first, then whatever budget is left, starting each flush
    // at a different shard so that no shard is always last.
    const std::size_t share = (limit + kShards - 1) / kShards;
    for (std::size_t i = 0; i < kShards && out.size() < limit; ++i) {
        take_from(shards_[(next_shard_ + i) % kShards], share);
    }
    for (std::size_t i = 0; i < kShards && out.size() < limit; ++i) {
        take_from(shards_[(next_shard_ + i) % kShards], limit);
    }
    next_shard_ = (next_shard_ + 1) % kShards;
    return out;
}

Result<std::size_t> ActivityTracker::flush(bool all) {
    std::lock_guard flushing(flush_mu_);
    auto batch = take(all ? static_cast<std::size_t>(-1) : max_batch_);
    auto& m = activity_metrics();
    if (batch.empty()) {
        m.pending.set(static_cast<std::int64_t>(pending()));
        return std::size_t{0};
    }
    // One write job for the whole batch: one commit, however many devices.
    auto written = storage::write_sync<std::size_t>(
        db_, [&batch](storage::WriteTxn& txn) -> Result<std::size_t> {
            for (const auto& s : batch) {
                if (auto r = txn.record_device_activity(s.user_id, s.device_id, s.ts, s.ip); !r) {
                    return r.error();
                }
            }
            return batch.size();
        });
    if (!written) {
        // Put them back (a newer sighting that arrived meanwhile wins) for the next interval.
        for (auto& s : batch) touch(s.user_id, s.device_id, s.ip, s.ts);
        m.pending.set(static_cast<std::int64_t>(pending()));
        return written.error();
    }
    m.rows.inc(*written);
    m.pending.set(static_cast<std::int64_t>(pending()));
    return written;
}

void ActivityTracker::start() {
    std::lock_guard lock(run_mu_);
    if (thread_.joinable() || stopping_) return;
    thread_ = std::thread([this] { run(); });
}

void ActivityTracker::run() {
    std::unique_lock lock(run_mu_);
    while (!stopping_) {
        if (wake_.wait_for(lock, interval_, [this] { return stopping_; })) break;
        lock.unlock();
        try {
            if (auto r = flush(); !r) {
                log::app()->warn("device activity: batch write failed ({}); will retry",
                                 r.error().message);
            }
        } catch (const std::exception& e) {
            log::app()->error("device activity: flush threw: {}", e.what());
        }
        lock.lock();
    }
}

void ActivityTracker::stop() {
    {
        std::lock_guard lock(run_mu_);
        if (stopped_) return;
        stopping_ = true;
        stopped_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (pending() == 0) return;
    if (auto r = flush(true); !r) {
        log::app()->warn("device activity: final batch write failed ({}); {} sightings lost",
                         r.error().message, pending());
    }
}

}  // namespace myelin::service
