// The PostgreSQL side of what clients store right after login (issue #8 §1): account data,
// filters, profiles, end-to-end keys, device-list changes and to-device messages (migration 7).
// Members of PgQueries / PgWriteTxn declared in pg_txn.hpp; kept apart from pg_txn.cpp so that
// the account and token queries stay readable. Every write job is SERIALIZABLE, so the counter
// row of a stream (stream_positions) orders the jobs that take positions on it: positions
// become visible in order, and of two jobs claiming the same one-time key one is run again.

#include <string_view>
#include <utility>

#include "myelin/storage/postgres/pg_rows.hpp"
#include "myelin/storage/postgres/pg_txn.hpp"

namespace myelin::storage::pg {

namespace {

// ---- SQL ----------------------------------------------------------------------------------

// One counter row per (scope, stream); every write that hands out a position bumps it in the
// same transaction, so positions never repeat, also after the rows they named are deleted.
constexpr std::string_view kNextPosition =
    "INSERT INTO stream_positions (scope, stream, position) VALUES ($1, $2, 1) "
    "ON CONFLICT (scope, stream) DO UPDATE SET position = stream_positions.position + 1 RETURNING "
    "position";
constexpr std::string_view kStreamPosition =
    "SELECT position FROM stream_positions WHERE scope = $1 AND stream = $2";

constexpr std::string_view kFindAccountData =
    "SELECT user_id, room_id, data_type, content, stream_pos FROM account_data "
    "WHERE user_id = $1 AND room_id = $2 AND data_type = $3";
constexpr std::string_view kAccountDataSince =
    "SELECT user_id, room_id, data_type, content, stream_pos FROM account_data "
    "WHERE user_id = $1 AND stream_pos > $2 ORDER BY stream_pos LIMIT $3";
constexpr std::string_view kPutAccountData =
    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, data_type) "
    "DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos";

constexpr std::string_view kFindFilter =
    "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2";
constexpr std::string_view kInsertFilter =
    "INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, "
    "(SELECT COALESCE(MAX(filter_id) + 1, 0) FROM filters WHERE user_id = $1), $2) "
    "RETURNING filter_id";

constexpr std::string_view kFindProfile =
    "SELECT user_id, displayname, avatar_url FROM profiles WHERE user_id = $1";
constexpr std::string_view kUpsertProfile =
    "INSERT INTO profiles (user_id, displayname, avatar_url) VALUES ($1, $2, $3) "
    "ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname, "
    "avatar_url = excluded.avatar_url";

constexpr std::string_view kListDeviceKeys =
    "SELECT user_id, device_id, key_json FROM device_keys WHERE user_id = $1 "
    "ORDER BY device_id";
constexpr std::string_view kFindDeviceKeys =
    "SELECT user_id, device_id, key_json FROM device_keys WHERE user_id = $1 AND device_id = $2";
constexpr std::string_view kUpsertDeviceKeys =
    "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) "
    "ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json";
constexpr std::string_view kCountOneTimeKeys =
    "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 "
    "GROUP BY algorithm ORDER BY algorithm";
constexpr std::string_view kUnusedFallbackAlgorithms =
    "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = FALSE "
    "ORDER BY algorithm";
constexpr std::string_view kInsertOneTimeKey =
    "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
constexpr std::string_view kUpsertFallbackKey =
    "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) "
    "VALUES ($1, $2, $3, $4, $5, FALSE) ON CONFLICT (user_id, device_id, algorithm) "
    "DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = FALSE";
constexpr std::string_view kClaimOneTimeKey =
    "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 "
    "AND key_id = (SELECT key_id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 "
    "AND algorithm = $3 ORDER BY key_id LIMIT 1) "
    "RETURNING user_id, device_id, algorithm, key_id, key_json";
constexpr std::string_view kClaimFallbackKey =
    "UPDATE fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 "
    "RETURNING user_id, device_id, algorithm, key_id, key_json";
constexpr std::string_view kDeleteDeviceKeys =
    "DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2";
constexpr std::string_view kDeleteOneTimeKeys =
    "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2";
constexpr std::string_view kDeleteFallbackKeys =
    "DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2";
constexpr std::string_view kDeleteDeviceKeySignatures =
    "DELETE FROM key_signatures WHERE target_user = $1 AND target_key = $2";

constexpr std::string_view kInsertDeviceListChange =
    "INSERT INTO device_list_changes (stream_pos, user_id, device_id) VALUES ($1, $2, $3)";
constexpr std::string_view kDeviceListChangesSince =
    "SELECT stream_pos, user_id, device_id FROM device_list_changes WHERE stream_pos > $1 "
    "ORDER BY stream_pos LIMIT $2";

// As the SQLite backend's: oldest first; every change of a (user, device) but its newest.
constexpr std::string_view kPruneToDeviceTxns =
    "DELETE FROM to_device_txns WHERE (user_id, device_id, txn_id) IN ("
    "SELECT user_id, device_id, txn_id FROM to_device_txns WHERE created_ts < $1 "
    "ORDER BY created_ts LIMIT $2)";
constexpr std::string_view kPruneSupersededDeviceListChanges =
    "DELETE FROM device_list_changes WHERE stream_pos IN ("
    "SELECT stream_pos FROM (SELECT stream_pos, ROW_NUMBER() OVER ("
    "PARTITION BY user_id, device_id ORDER BY stream_pos DESC) AS newer FROM device_list_changes) "
    "AS ranked WHERE newer > 1 ORDER BY stream_pos LIMIT $1)";
constexpr std::string_view kInsertToDeviceTxn =
    "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
constexpr std::string_view kInsertToDevice =
    "INSERT INTO to_device_messages (recipient_user, recipient_device, stream_pos, sender, "
    "event_type, content) VALUES ($1, $2, $3, $4, $5, $6)";
constexpr std::string_view kToDeviceSince =
    "SELECT stream_pos, recipient_user, recipient_device, sender, event_type, content "
    "FROM to_device_messages WHERE recipient_user = $1 AND recipient_device = $2 "
    "AND stream_pos > $3 ORDER BY stream_pos LIMIT $4";
constexpr std::string_view kDeleteToDeviceThrough =
    "DELETE FROM to_device_messages WHERE recipient_user = $1 AND recipient_device = $2 "
    "AND stream_pos <= $3";

// ---- Helpers ------------------------------------------------------------------------------

std::optional<std::string> optional_text(const Row& r, int column) {
    if (r.column_is_null(column)) return std::nullopt;
    return r.column_text(column);
}

Params& add_optional(Params& params, const std::optional<std::string>& value) {
    if (value) return params.add_text(*value);
    return params.add_null();
}

AccountDataRecord read_account_data(const Row& r) {
    AccountDataRecord out;
    out.user_id = r.column_text(0);
    out.room_id = r.column_text(1);
    out.type = r.column_text(2);
    out.content = r.column_text(3);
    out.stream_pos = r.column_int(4);
    return out;
}

DeviceKeysRecord read_device_keys(const Row& r) {
    return DeviceKeysRecord{r.column_text(0), r.column_text(1), r.column_text(2)};
}

E2eKeyRecord read_e2e_key(const Row& r) {
    return E2eKeyRecord{r.column_text(0), r.column_text(1), r.column_text(2), r.column_text(3),
                        r.column_text(4)};
}

ToDeviceRecord read_to_device(const Row& r) {
    ToDeviceRecord out;
    out.stream_pos = r.column_int(0);
    out.recipient_user = r.column_text(1);
    out.recipient_device = r.column_text(2);
    out.sender = r.column_text(3);
    out.type = r.column_text(4);
    out.content = r.column_text(5);
    return out;
}

Result<std::int64_t> single_int(const Result<Rows>& rows, const char* what) {
    if (!rows) return rows.error();
    if (rows->empty()) return errors::internal(what);
    return rows->row(0).column_int(0);
}

Result<std::int64_t> next_position(Connection& conn, std::string_view scope,
                                   std::string_view stream) {
    return single_int(conn.query(kNextPosition, Params{}.add_text(scope).add_text(stream)),
                      "stream position not returned");
}

}  // namespace

// ---- Queries ------------------------------------------------------------------------------

template <typename Base>
Result<std::optional<AccountDataRecord>> PgQueries<Base>::find_account_data(
    std::string_view user_id, std::string_view room_id, std::string_view type) {
    return first_row<AccountDataRecord>(
        conn_.query(kFindAccountData, Params{}.add_text(user_id).add_text(room_id).add_text(type)),
        read_account_data);
}

template <typename Base>
Result<std::vector<AccountDataRecord>> PgQueries<Base>::account_data_since(std::string_view user_id,
                                                                           std::int64_t after_pos,
                                                                           int limit) {
    if (limit <= 0) return std::vector<AccountDataRecord>();
    return all_rows<AccountDataRecord>(
        conn_.query(kAccountDataSince,
                    Params{}.add_text(user_id).add_int(after_pos).add_int(limit)),
        read_account_data);
}

template <typename Base>
Result<std::optional<std::string>> PgQueries<Base>::find_filter(std::string_view user_id,
                                                                std::int64_t filter_id) {
    return first_row<std::string>(
        conn_.query(kFindFilter, Params{}.add_text(user_id).add_int(filter_id)),
        [](const Row& r) { return r.column_text(0); });
}

template <typename Base>
Result<std::optional<ProfileRecord>> PgQueries<Base>::find_profile(std::string_view user_id) {
    return first_row<ProfileRecord>(
        conn_.query(kFindProfile, Params{}.add_text(user_id)), [](const Row& r) {
            return ProfileRecord{r.column_text(0), optional_text(r, 1), optional_text(r, 2)};
        });
}

template <typename Base>
Result<std::vector<DeviceKeysRecord>> PgQueries<Base>::list_device_keys(
    std::string_view user_id, std::optional<std::string_view> device_id) {
    if (device_id) {
        return all_rows<DeviceKeysRecord>(
            conn_.query(kFindDeviceKeys, Params{}.add_text(user_id).add_text(*device_id)),
            read_device_keys);
    }
    return all_rows<DeviceKeysRecord>(conn_.query(kListDeviceKeys, Params{}.add_text(user_id)),
                                      read_device_keys);
}

template <typename Base>
Result<std::vector<std::pair<std::string, std::int64_t>>> PgQueries<Base>::count_one_time_keys(
    std::string_view user_id, std::string_view device_id) {
    return all_rows<std::pair<std::string, std::int64_t>>(
        conn_.query(kCountOneTimeKeys, Params{}.add_text(user_id).add_text(device_id)),
        [](const Row& r) {
            return std::pair<std::string, std::int64_t>(r.column_text(0), r.column_int(1));
        });
}

template <typename Base>
Result<std::vector<std::string>> PgQueries<Base>::unused_fallback_key_algorithms(
    std::string_view user_id, std::string_view device_id) {
    return all_rows<std::string>(
        conn_.query(kUnusedFallbackAlgorithms, Params{}.add_text(user_id).add_text(device_id)),
        [](const Row& r) { return r.column_text(0); });
}

template <typename Base>
Result<std::vector<ToDeviceRecord>> PgQueries<Base>::to_device_since(std::string_view user_id,
                                                                     std::string_view device_id,
                                                                     std::int64_t after_pos,
                                                                     int limit) {
    if (limit <= 0) return std::vector<ToDeviceRecord>();
    return all_rows<ToDeviceRecord>(
        conn_.query(
            kToDeviceSince,
            Params{}.add_text(user_id).add_text(device_id).add_int(after_pos).add_int(limit)),
        read_to_device);
}

template <typename Base>
Result<std::vector<DeviceListChangeRecord>> PgQueries<Base>::device_list_changes_since(
    std::int64_t after_pos, int limit) {
    if (limit <= 0) return std::vector<DeviceListChangeRecord>();
    return all_rows<DeviceListChangeRecord>(
        conn_.query(kDeviceListChangesSince, Params{}.add_int(after_pos).add_int(limit)),
        [](const Row& r) {
            return DeviceListChangeRecord{r.column_int(0), r.column_text(1), r.column_text(2)};
        });
}

template <typename Base>
Result<std::int64_t> PgQueries<Base>::stream_position(std::string_view scope,
                                                      std::string_view stream) {
    auto pos = first_row<std::int64_t>(
        conn_.query(kStreamPosition, Params{}.add_text(scope).add_text(stream)),
        [](const Row& r) { return r.column_int(0); });
    if (!pos) return pos.error();
    return pos->value_or(0);
}

// The members above are instantiated here for both transactions (pg_txn.cpp instantiates the
// rest of PgQueries).
#define MYELIN_PG_CLIENT_DATA_QUERIES(Base)                                                        \
    template Result<std::optional<AccountDataRecord>> PgQueries<Base>::find_account_data(          \
        std::string_view, std::string_view, std::string_view);                                     \
    template Result<std::vector<AccountDataRecord>> PgQueries<Base>::account_data_since(           \
        std::string_view, std::int64_t, int);                                                      \
    template Result<std::optional<std::string>> PgQueries<Base>::find_filter(std::string_view,     \
                                                                             std::int64_t);        \
    template Result<std::optional<ProfileRecord>> PgQueries<Base>::find_profile(std::string_view); \
    template Result<std::vector<DeviceKeysRecord>> PgQueries<Base>::list_device_keys(              \
        std::string_view, std::optional<std::string_view>);                                        \
    template Result<std::vector<std::pair<std::string, std::int64_t>>>                             \
        PgQueries<Base>::count_one_time_keys(std::string_view, std::string_view);                  \
    template Result<std::vector<std::string>> PgQueries<Base>::unused_fallback_key_algorithms(     \
        std::string_view, std::string_view);                                                       \
    template Result<std::vector<ToDeviceRecord>> PgQueries<Base>::to_device_since(                 \
        std::string_view, std::string_view, std::int64_t, int);                                    \
    template Result<std::vector<DeviceListChangeRecord>>                                           \
    PgQueries<Base>::device_list_changes_since(std::int64_t, int);                                 \
    template Result<std::int64_t> PgQueries<Base>::stream_position(std::string_view,               \
                                                                   std::string_view);
MYELIN_PG_CLIENT_DATA_QUERIES(ReadTxn)
MYELIN_PG_CLIENT_DATA_QUERIES(WriteTxn)
#undef MYELIN_PG_CLIENT_DATA_QUERIES

// ---- Mutations ----------------------------------------------------------------------------

Result<std::int64_t> PgWriteTxn::put_account_data(std::string_view user_id,
                                                  std::string_view room_id, std::string_view type,
                                                  std::string_view content) {
    auto pos = next_position(conn_, user_id, "account_data");
    if (!pos) return pos.error();
    if (auto r = done(conn_.query(
            kPutAccountData,
            Params{}.add_text(user_id).add_text(room_id).add_text(type).add_text(content).add_int(
                *pos)));
        !r) {
        return r.error();
    }
    return *pos;
}

Result<std::int64_t> PgWriteTxn::insert_filter(std::string_view user_id,
                                               std::string_view filter_json) {
    return single_int(conn_.query(kInsertFilter, Params{}.add_text(user_id).add_text(filter_json)),
                      "filter id not returned");
}

Result<void> PgWriteTxn::upsert_profile(const ProfileRecord& profile) {
    Params params;
    params.add_text(profile.user_id);
    add_optional(params, profile.displayname);
    add_optional(params, profile.avatar_url);
    return done(conn_.query(kUpsertProfile, params));
}

Result<void> PgWriteTxn::upsert_device_keys(const DeviceKeysRecord& keys) {
    return done(conn_.query(
        kUpsertDeviceKeys,
        Params{}.add_text(keys.user_id).add_text(keys.device_id).add_text(keys.key_json)));
}

Result<bool> PgWriteTxn::insert_one_time_key(const E2eKeyRecord& key) {
    auto rows = conn_.query(kInsertOneTimeKey, Params{}
                                                   .add_text(key.user_id)
                                                   .add_text(key.device_id)
                                                   .add_text(key.algorithm)
                                                   .add_text(key.key_id)
                                                   .add_text(key.key_json));
    if (!rows) return rows.error();
    return rows->affected() == 1;
}

Result<void> PgWriteTxn::upsert_fallback_key(const E2eKeyRecord& key) {
    return done(conn_.query(kUpsertFallbackKey, Params{}
                                                    .add_text(key.user_id)
                                                    .add_text(key.device_id)
                                                    .add_text(key.algorithm)
                                                    .add_text(key.key_id)
                                                    .add_text(key.key_json)));
}

Result<std::optional<E2eKeyRecord>> PgWriteTxn::claim_one_time_key(std::string_view user_id,
                                                                   std::string_view device_id,
                                                                   std::string_view algorithm) {
    return first_row<E2eKeyRecord>(
        conn_.query(kClaimOneTimeKey,
                    Params{}.add_text(user_id).add_text(device_id).add_text(algorithm)),
        read_e2e_key);
}

Result<std::optional<E2eKeyRecord>> PgWriteTxn::claim_fallback_key(std::string_view user_id,
                                                                   std::string_view device_id,
                                                                   std::string_view algorithm) {
    return first_row<E2eKeyRecord>(
        conn_.query(kClaimFallbackKey,
                    Params{}.add_text(user_id).add_text(device_id).add_text(algorithm)),
        read_e2e_key);
}

Result<void> PgWriteTxn::delete_device_e2e_keys(std::string_view user_id,
                                                std::string_view device_id) {
    for (auto sql :
         {kDeleteDeviceKeys, kDeleteOneTimeKeys, kDeleteFallbackKeys, kDeleteDeviceKeySignatures}) {
        if (auto r = done(conn_.query(sql, Params{}.add_text(user_id).add_text(device_id))); !r) {
            return r.error();
        }
    }
    return {};
}

Result<std::int64_t> PgWriteTxn::record_device_list_change(std::string_view user_id,
                                                           std::string_view device_id) {
    auto pos = next_position(conn_, "", "device_lists");
    if (!pos) return pos.error();
    if (auto r = done(conn_.query(kInsertDeviceListChange,
                                  Params{}.add_int(*pos).add_text(user_id).add_text(device_id)));
        !r) {
        return r.error();
    }
    return *pos;
}

Result<bool> PgWriteTxn::insert_to_device_txn(std::string_view user_id, std::string_view device_id,
                                              std::string_view txn_id, std::int64_t ts) {
    auto rows =
        conn_.query(kInsertToDeviceTxn,
                    Params{}.add_text(user_id).add_text(device_id).add_text(txn_id).add_int(ts));
    if (!rows) return rows.error();
    return rows->affected() == 1;
}

Result<std::int64_t> PgWriteTxn::prune_to_device_txns(std::int64_t before_ts, int limit) {
    if (limit <= 0) return std::int64_t{0};  // as the SQLite backend
    auto rows = conn_.query(kPruneToDeviceTxns, Params{}.add_int(before_ts).add_int(limit));
    if (!rows) return rows.error();
    return rows->affected();
}

Result<std::int64_t> PgWriteTxn::prune_superseded_device_list_changes(int limit) {
    if (limit <= 0) return std::int64_t{0};
    auto rows = conn_.query(kPruneSupersededDeviceListChanges, Params{}.add_int(limit));
    if (!rows) return rows.error();
    return rows->affected();
}

Result<std::int64_t> PgWriteTxn::insert_to_device(const ToDeviceRecord& message) {
    auto pos = next_position(conn_, message.recipient_user, "to_device");
    if (!pos) return pos.error();
    if (auto r = done(conn_.query(kInsertToDevice, Params{}
                                                       .add_text(message.recipient_user)
                                                       .add_text(message.recipient_device)
                                                       .add_int(*pos)
                                                       .add_text(message.sender)
                                                       .add_text(message.type)
                                                       .add_text(message.content)));
        !r) {
        return r.error();
    }
    return *pos;
}

Result<std::int64_t> PgWriteTxn::delete_to_device_through(std::string_view user_id,
                                                          std::string_view device_id,
                                                          std::int64_t through_pos) {
    auto rows = conn_.query(kDeleteToDeviceThrough,
                            Params{}.add_text(user_id).add_text(device_id).add_int(through_pos));
    if (!rows) return rows.error();
    return rows->affected();
}

}  // namespace myelin::storage::pg
