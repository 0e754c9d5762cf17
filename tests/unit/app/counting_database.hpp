#pragma once

// A storage::Database decorator for tests: forwards every job to a real database, counts the
// write jobs (to check "one write job" contracts) and can make writes fail. Thread-safe like
// the database it wraps.

#include <atomic>
#include <string>
#include <utility>

#include "myelin/storage/database.hpp"

namespace myelin::test_support {

class CountingDatabase final : public storage::Database {
public:
    // `inner` must outlive this object.
    explicit CountingDatabase(storage::Database& inner) : inner_(inner) {}
    void post_read(storage::ReadJob job) override { inner_.post_read(std::move(job)); }
    // Counts the job; with fail_writes set, replaces its work by an injected 503.
    void post_write(storage::WriteJob job) override {
        ++writes;
        if (fail_writes.load()) {
            job.run = [](storage::WriteTxn&) -> Result<void> {
                return errors::unavailable("injected failure");
            };
        }
        inner_.post_write(std::move(job));
    }
    void close() override { inner_.close(); }
    std::string backend_name() const override { return "counting"; }

    std::atomic<int> writes{0};
    std::atomic<bool> fail_writes{false};

private:
    storage::Database& inner_;
};

}  // namespace myelin::test_support
