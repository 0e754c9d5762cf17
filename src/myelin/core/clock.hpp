#pragma once

// Wall-clock time in milliseconds since the Unix epoch, behind an interface so that tests can
// move time by hand. Implementations are thread-safe.

#include <atomic>
#include <cstdint>

namespace myelin {

class Clock {
public:
    virtual ~Clock() = default;
    // Milliseconds since 1970-01-01T00:00:00Z.
    virtual std::int64_t now_ms() const = 0;
};

// The real clock (std::chrono::system_clock).
class SystemClock final : public Clock {
public:
    std::int64_t now_ms() const override;
};

// A clock that only moves when told; for tests.
class ManualClock final : public Clock {
public:
    explicit ManualClock(std::int64_t start_ms) : now_(start_ms) {}
    std::int64_t now_ms() const override { return now_.load(); }
    void advance_ms(std::int64_t delta) { now_ += delta; }

private:
    std::atomic<std::int64_t> now_;
};

}  // namespace myelin
