#pragma once

// A storage::Database decorator for tests: runs every write job twice, as PostgreSQL's backend
// does after a lost serialization race. The first run's changes are rolled back (its result is
// replaced by an injected error), then the same job object runs again and its outcome is
// delivered. Thread-safe like the database it wraps.

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "myelin/storage/database.hpp"

namespace myelin::test_support {

class RetryingDatabase final : public storage::Database {
public:
    // `inner` must outlive this object.
    explicit RetryingDatabase(storage::Database& inner) : inner_(inner) {}
    void post_read(storage::ReadJob job) override { inner_.post_read(std::move(job)); }
    void post_write(storage::WriteJob job) override {
        auto original = std::make_shared<storage::WriteJob>(std::move(job));
        storage::WriteJob first;
        first.run = [original](storage::WriteTxn& txn) -> Result<void> {
            (void)original->run(txn);
            return errors::make(503, kRetryMarker, "rolled back to be run again");
        };
        first.on_committed = [this, original](const Result<void>& r) {
            if (!r && r.error().errcode == kRetryMarker) {
                ++retries;
                storage::WriteJob again;
                again.run = [original](storage::WriteTxn& txn) { return original->run(txn); };
                again.on_committed = [original](const Result<void>& outcome) {
                    original->on_committed(outcome);
                };
                inner_.post_write(std::move(again));
                return;
            }
            original->on_committed(r);
        };
        inner_.post_write(std::move(first));
    }
    void close() override { inner_.close(); }
    std::string backend_name() const override { return "retrying"; }

    std::atomic<int> retries{0};

private:
    static constexpr const char* kRetryMarker = "TEST_RETRY";
    storage::Database& inner_;
};

}  // namespace myelin::test_support
