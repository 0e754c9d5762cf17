#pragma once

// The PostgreSQL RateLimitExchange (storage/rate_limit_exchange.hpp): shared buckets in the
// UNLOGGED table rate_limit_buckets (no WAL: bucket state is worth nothing after a database
// crash, and losing it only refills the buckets), updated by one INSERT ... ON CONFLICT per
// exchange, so concurrent instances add their draws atomically. Uses its own connection in
// autocommit mode, reopened when lost.
//
// Thread-safety: none (one thread at a time).

#include <memory>

#include "myelin/storage/postgres/pg_connection.hpp"
#include "myelin/storage/rate_limit_exchange.hpp"

namespace myelin::storage::pg {

// The key as stored: keys of printable ASCII up to 200 bytes as they are; anything else (NUL
// bytes, other control characters, non-ASCII, very long) as "#" + a 64-bit FNV-1a in hex, so
// that no key can make the statement fail. The same on every instance and release.
std::string stored_bucket_key(std::string_view key);

class PgRateLimitExchange final : public RateLimitExchange {
public:
    // `conn` may be null (then the first exchange connects).
    PgRateLimitExchange(ConnectionSettings settings, std::unique_ptr<Connection> conn);

    Result<std::vector<SharedBucket>> exchange(std::span<const BucketDraw> draws,
                                               std::int64_t now_us) override;
    Result<std::int64_t> prune(std::int64_t now_us, int limit) override;
    Result<ExactDraw> draw(int limit_class, std::string_view key, std::int64_t cost_us,
                           std::int64_t burst_us, std::int64_t now_us) override;
    Result<void> put_back(int limit_class, std::string_view key, std::int64_t amount_us,
                          std::int64_t now_us) override;

private:
    // The connection, reopened if lost.
    Result<Connection*> connection();

    ConnectionSettings settings_;
    std::unique_ptr<Connection> conn_;
};

}  // namespace myelin::storage::pg
