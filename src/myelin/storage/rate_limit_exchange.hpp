#pragma once

// Rate-limit buckets shared by several server instances on one database (issue #5): each
// instance decides every request from its own in-memory buckets (no I/O on the request path)
// and, every few tens of milliseconds, exchanges what it drew with the database, which holds
// one "theoretical arrival time" (GCRA, see service/rate_limiter.hpp) per bucket for all of
// them. An exchange adds this instance's draws to the shared buckets and returns their new
// state, which the instance folds into its own.
//
// Thread-safety: one exchange object is used by one thread at a time.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "myelin/core/error.hpp"

namespace myelin::storage {

// What one instance drew from one bucket since its last exchange.
struct BucketDraw {
    int limit_class = 0;           // service::LimitClass
    std::string key;               // the bucket key (IP key, user ID, "user|device")
    std::int64_t consumed_us = 0;  // tokens drawn, as GCRA time (negative: given back)
};

// A shared bucket after an exchange.
struct SharedBucket {
    int limit_class = 0;
    std::string key;
    std::int64_t tat_us = 0;  // theoretical arrival time, µs since the epoch
};

// What one exact draw did.
struct ExactDraw {
    bool granted = false;
    // The bucket's TAT afterwards (unchanged when refused); 0 when it could not be read (a
    // refusal racing another instance's first draw of the bucket).
    std::int64_t tat_us = 0;
};

class RateLimitExchange {
public:
    virtual ~RateLimitExchange() = default;

    // Exact draw, for the budgets where a slack of one exchange interval would matter (logins,
    // failed logins, registrations, refreshes): one atomic statement takes `cost_us` from the
    // shared bucket only if that leaves its TAT at most `burst_us` ahead of `now_us` (a new
    // bucket starts full). Error (503) when the database is unreachable.
    [[nodiscard]] virtual Result<ExactDraw> draw(int limit_class, std::string_view key,
                                                 std::int64_t cost_us, std::int64_t burst_us,
                                                 std::int64_t now_us) = 0;

    // Gives `amount_us` back to the shared bucket (its TAT never goes below `now_us`). No-op
    // when the bucket is absent.
    [[nodiscard]] virtual Result<void> put_back(int limit_class, std::string_view key,
                                                std::int64_t amount_us, std::int64_t now_us) = 0;

    // Adds each draw to its shared bucket atomically (tat = max(tat, now) + consumed; a new
    // bucket starts full) and returns every drawn bucket's new state. One round trip. Error
    // (503) when the database is unreachable; the draws are then not recorded (the caller may
    // carry them over to the next exchange).
    [[nodiscard]] virtual Result<std::vector<SharedBucket>> exchange(
        std::span<const BucketDraw> draws, std::int64_t now_us) = 0;

    // Deletes up to `limit` buckets that are full at `now_us` (they hold no information).
    // Returns how many were deleted.
    [[nodiscard]] virtual Result<std::int64_t> prune(std::int64_t now_us, int limit) = 0;
};

}  // namespace myelin::storage
