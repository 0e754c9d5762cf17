#include "myelin/storage/postgres/pg_rate_limit_exchange.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace myelin::storage::pg {

namespace {

// Each instance's draws go in as three parallel arrays; the new state of every drawn bucket
// comes back. max(tat, now) + consumed: a new row starts full, i.e. at `now`.
constexpr std::string_view kExchange =
    "INSERT INTO rate_limit_buckets AS b (limit_class, bucket_key, tat_us) "
    "SELECT c, k, $4::bigint + d FROM unnest($1::bigint[], $2::text[], $3::bigint[]) "
    "AS u(c, k, d) "
    "ON CONFLICT (limit_class, bucket_key) DO UPDATE "
    "SET tat_us = GREATEST(b.tat_us, $4::bigint) + (excluded.tat_us - $4::bigint) "
    "RETURNING limit_class, bucket_key, tat_us";

constexpr std::string_view kPrune =
    "DELETE FROM rate_limit_buckets WHERE (limit_class, bucket_key) IN "
    "(SELECT limit_class, bucket_key FROM rate_limit_buckets WHERE tat_us < $1 LIMIT $2)";

// The draw and, when it was refused, the row as it stands (the outer SELECT sees the snapshot
// from before the INSERT, i.e. the unchanged row). $1 class, $2 key, $3 now, $4 cost, $5 burst.
constexpr std::string_view kDraw =
    "WITH d AS (INSERT INTO rate_limit_buckets AS b (limit_class, bucket_key, tat_us) "
    "VALUES ($1::bigint, $2::text, $3::bigint + $4::bigint) "
    "ON CONFLICT (limit_class, bucket_key) DO UPDATE "
    "SET tat_us = GREATEST(b.tat_us, $3::bigint) + $4::bigint "
    "WHERE GREATEST(b.tat_us, $3::bigint) + $4::bigint - $3::bigint <= $5::bigint "
    "RETURNING tat_us) "
    "SELECT true, tat_us FROM d UNION ALL "
    "SELECT false, tat_us FROM rate_limit_buckets "
    "WHERE limit_class = $1::bigint AND bucket_key = $2::text AND NOT EXISTS (SELECT 1 FROM d)";

constexpr std::string_view kPutBack =
    "UPDATE rate_limit_buckets SET tat_us = GREATEST($4::bigint, tat_us - $3::bigint) "
    "WHERE limit_class = $1::bigint AND bucket_key = $2::text";

constexpr std::size_t kMaxPlainKey = 200;

bool plain(std::string_view key) {
    if (key.size() > kMaxPlainKey) return false;
    return std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// A PostgreSQL array literal element: double-quoted, with '"' and '\' escaped.
void append_quoted(std::string& out, std::string_view value) {
    out += '"';
    for (char c : value) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
}

}  // namespace

std::string stored_bucket_key(std::string_view key) {
    if (plain(key)) return std::string(key);
    std::uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : key) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return fmt::format("#{:016x}", h);
}

PgRateLimitExchange::PgRateLimitExchange(ConnectionSettings settings,
                                         std::unique_ptr<Connection> conn)
    : settings_(std::move(settings)), conn_(std::move(conn)) {}

Result<Connection*> PgRateLimitExchange::connection() {
    if (conn_ && conn_->broken()) conn_.reset();
    if (!conn_) {
        auto opened = Connection::open(settings_);
        if (!opened) return opened.error();
        conn_ = std::move(*opened);
    }
    conn_->clear_failure();
    return conn_.get();
}

Result<std::vector<SharedBucket>> PgRateLimitExchange::exchange(std::span<const BucketDraw> draws,
                                                                std::int64_t now_us) {
    std::vector<SharedBucket> out;
    if (draws.empty()) return out;
    // Stored keys, and in one order on every instance, so that two exchanges over the same
    // buckets lock their rows in the same order (no deadlock between instances).
    std::vector<std::pair<std::pair<int, std::string>, std::int64_t>> rows;
    rows.reserve(draws.size());
    for (const auto& d : draws) rows.push_back({{d.limit_class, stored_bucket_key(d.key)}, 0});
    for (std::size_t i = 0; i < draws.size(); ++i) rows[i].second = draws[i].consumed_us;
    std::sort(rows.begin(), rows.end());
    std::string classes = "{";
    std::string keys = "{";
    std::string consumed = "{";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        // Two original keys may map to one stored key: merge them (one row per bucket).
        if (i > 0 && rows[i].first == rows[i - 1].first) continue;
        std::int64_t sum = rows[i].second;
        for (std::size_t j = i + 1; j < rows.size() && rows[j].first == rows[i].first; ++j) {
            sum += rows[j].second;
        }
        if (classes.size() > 1) {
            classes += ',';
            keys += ',';
            consumed += ',';
        }
        classes += std::to_string(rows[i].first.first);
        append_quoted(keys, rows[i].first.second);
        consumed += std::to_string(sum);
    }
    classes += '}';
    keys += '}';
    consumed += '}';
    auto conn = connection();
    if (!conn) return conn.error();
    auto result = (*conn)->query(
        kExchange, Params{}.add_text(classes).add_text(keys).add_text(consumed).add_int(now_us),
        "sharing rate-limit buckets");
    if (!result) return result.error();
    out.reserve(static_cast<std::size_t>(result->size()));
    for (int i = 0; i < result->size(); ++i) {
        const Row row = result->row(i);
        out.push_back(SharedBucket{static_cast<int>(row.column_int(0)), row.column_text(1),
                                   row.column_int(2)});
    }
    return out;
}

Result<std::int64_t> PgRateLimitExchange::prune(std::int64_t now_us, int limit) {
    auto conn = connection();
    if (!conn) return conn.error();
    auto result =
        (*conn)->query(kPrune, Params{}.add_int(now_us).add_int(limit), "pruning rate limits");
    if (!result) return result.error();
    return result->affected();
}

Result<ExactDraw> PgRateLimitExchange::draw(int limit_class, std::string_view key,
                                            std::int64_t cost_us, std::int64_t burst_us,
                                            std::int64_t now_us) {
    auto conn = connection();
    if (!conn) return conn.error();
    auto result = (*conn)->query(kDraw,
                                 Params{}
                                     .add_int(limit_class)
                                     .add_text(stored_bucket_key(key))
                                     .add_int(now_us)
                                     .add_int(cost_us)
                                     .add_int(burst_us),
                                 "drawing from a rate-limit bucket");
    if (!result) return result.error();
    ExactDraw out;
    if (!result->empty()) {
        out.granted = result->row(0).column_bool(0);
        out.tat_us = result->row(0).column_int(1);
    }
    return out;
}

Result<void> PgRateLimitExchange::put_back(int limit_class, std::string_view key,
                                           std::int64_t amount_us, std::int64_t now_us) {
    auto conn = connection();
    if (!conn) return conn.error();
    auto result = (*conn)->query(kPutBack,
                                 Params{}
                                     .add_int(limit_class)
                                     .add_text(stored_bucket_key(key))
                                     .add_int(amount_us)
                                     .add_int(now_us),
                                 "giving back to a rate-limit bucket");
    if (!result) return result.error();
    return {};
}

}  // namespace myelin::storage::pg
