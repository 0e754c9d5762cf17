#include "myelin/service/revocation_listener.hpp"

#include <utility>
#include <vector>

#include "myelin/core/log.hpp"
#include "myelin/storage/await.hpp"

namespace myelin::service {
namespace {

constexpr int kBatch = 1000;  // entries read per query

}  // namespace

RevocationListener::RevocationListener(storage::Database& db, auth::TokenCache& cache,
                                       std::chrono::milliseconds interval)
    : db_(db), cache_(cache), interval_(interval) {}

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

Result<std::size_t> RevocationListener::poll_once() {
    std::size_t applied = 0;
    for (;;) {
        const std::int64_t after = last_id();
        auto batch = storage::read_sync<std::vector<storage::RevocationRecord>>(
            db_, [after](storage::ReadTxn& txn) { return txn.revocations_since(after, kBatch); });
        if (!batch) return batch.error();
        for (const auto& entry : *batch) {
            cache_.apply_logged_revocation(entry.session_id, entry.reason);
            ++applied;
        }
        if (!batch->empty()) {
            std::lock_guard lock(mu_);
            last_id_ = batch->back().id;
        }
        if (batch->size() < static_cast<std::size_t>(kBatch)) return applied;
    }
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
