// The SQLite side of what clients store right after login (issue #8 §1): account data, filters,
// profiles, end-to-end keys, device-list changes and to-device messages (migration 7). Members of
// SqliteQueries / SqliteWriteTxn declared in sqlite_txn.hpp; kept apart from sqlite_txn.cpp so
// that the account and token queries stay readable.

#include <string_view>
#include <utility>

#include "myelin/storage/sqlite/sqlite_rows.hpp"
#include "myelin/storage/sqlite/sqlite_txn.hpp"

namespace myelin::storage::sqlite {

namespace {

// ---- SQL ----------------------------------------------------------------------------------

// One counter row per (scope, stream); every write that hands out a position bumps it in the
// same transaction, so positions never repeat, also after the rows they named are deleted.
constexpr std::string_view kNextPosition =
    "INSERT INTO stream_positions (scope, stream, position) VALUES (?1, ?2, 1) "
    "ON CONFLICT (scope, stream) DO UPDATE SET position = position + 1 RETURNING position";
constexpr std::string_view kStreamPosition =
    "SELECT position FROM stream_positions WHERE scope = ?1 AND stream = ?2";

constexpr std::string_view kFindAccountData =
    "SELECT user_id, room_id, data_type, content, stream_pos FROM account_data "
    "WHERE user_id = ?1 AND room_id = ?2 AND data_type = ?3";
constexpr std::string_view kAccountDataSince =
    "SELECT user_id, room_id, data_type, content, stream_pos FROM account_data "
    "WHERE user_id = ?1 AND stream_pos > ?2 ORDER BY stream_pos LIMIT ?3";
constexpr std::string_view kPutAccountData =
    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id, room_id, data_type) "
    "DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos";

constexpr std::string_view kFindFilter =
    "SELECT filter_json FROM filters WHERE user_id = ?1 AND filter_id = ?2";
constexpr std::string_view kInsertFilter =
    "INSERT INTO filters (user_id, filter_id, filter_json) VALUES (?1, "
    "(SELECT COALESCE(MAX(filter_id) + 1, 0) FROM filters WHERE user_id = ?1), ?2) "
    "RETURNING filter_id";

constexpr std::string_view kFindProfile =
    "SELECT user_id, displayname, avatar_url FROM profiles WHERE user_id = ?1";
constexpr std::string_view kUpsertProfile =
    "INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname, "
    "avatar_url = excluded.avatar_url";

constexpr std::string_view kListDeviceKeys =
    "SELECT user_id, device_id, key_json FROM device_keys WHERE user_id = ?1 "
    "ORDER BY device_id";
constexpr std::string_view kFindDeviceKeys =
    "SELECT user_id, device_id, key_json FROM device_keys WHERE user_id = ?1 AND device_id = ?2";
constexpr std::string_view kUpsertDeviceKeys =
    "INSERT INTO device_keys (user_id, device_id, key_json) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json";
constexpr std::string_view kCountOneTimeKeys =
    "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 "
    "GROUP BY algorithm ORDER BY algorithm";
constexpr std::string_view kUnusedFallbackAlgorithms =
    "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 "
    "ORDER BY algorithm";
constexpr std::string_view kInsertOneTimeKey =
    "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
constexpr std::string_view kUpsertFallbackKey =
    "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) "
    "VALUES (?1, ?2, ?3, ?4, ?5, 0) ON CONFLICT (user_id, device_id, algorithm) "
    "DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0";
constexpr std::string_view kClaimOneTimeKey =
    "DELETE FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 "
    "AND key_id = (SELECT key_id FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2 "
    "AND algorithm = ?3 ORDER BY key_id LIMIT 1) "
    "RETURNING user_id, device_id, algorithm, key_id, key_json";
constexpr std::string_view kClaimFallbackKey =
    "UPDATE fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 "
    "RETURNING user_id, device_id, algorithm, key_id, key_json";
constexpr std::string_view kDeleteDeviceKeys =
    "DELETE FROM device_keys WHERE user_id = ?1 AND device_id = ?2";
constexpr std::string_view kDeleteOneTimeKeys =
    "DELETE FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2";
constexpr std::string_view kDeleteFallbackKeys =
    "DELETE FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2";
constexpr std::string_view kDeleteDeviceKeySignatures =
    "DELETE FROM key_signatures WHERE target_user = ?1 AND target_key = ?2";

constexpr std::string_view kInsertDeviceListChange =
    "INSERT INTO device_list_changes (stream_pos, user_id, device_id) VALUES (?1, ?2, ?3)";
constexpr std::string_view kDeviceListChangesSince =
    "SELECT stream_pos, user_id, device_id FROM device_list_changes WHERE stream_pos > ?1 "
    "ORDER BY stream_pos LIMIT ?2";

// Oldest first, so an interrupted pass leaves the newest transactions.
constexpr std::string_view kPruneToDeviceTxns =
    "DELETE FROM to_device_txns WHERE (user_id, device_id, txn_id) IN ("
    "SELECT user_id, device_id, txn_id FROM to_device_txns WHERE created_ts < ?1 "
    "ORDER BY created_ts LIMIT ?2)";
// Every change of a (user, device) but its newest.
constexpr std::string_view kPruneSupersededDeviceListChanges =
    "DELETE FROM device_list_changes WHERE stream_pos IN ("
    "SELECT stream_pos FROM (SELECT stream_pos, ROW_NUMBER() OVER ("
    "PARTITION BY user_id, device_id ORDER BY stream_pos DESC) AS newer FROM device_list_changes) "
    "WHERE newer > 1 ORDER BY stream_pos LIMIT ?1)";
constexpr std::string_view kInsertToDeviceTxn =
    "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) "
    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";
constexpr std::string_view kInsertToDevice =
    "INSERT INTO to_device_messages (recipient_user, recipient_device, stream_pos, sender, "
    "event_type, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr std::string_view kToDeviceSince =
    "SELECT stream_pos, recipient_user, recipient_device, sender, event_type, content "
    "FROM to_device_messages WHERE recipient_user = ?1 AND recipient_device = ?2 "
    "AND stream_pos > ?3 ORDER BY stream_pos LIMIT ?4";
constexpr std::string_view kDeleteToDeviceThrough =
    "DELETE FROM to_device_messages WHERE recipient_user = ?1 AND recipient_device = ?2 "
    "AND stream_pos <= ?3";

// ---- Helpers ------------------------------------------------------------------------------

std::optional<std::string> optional_text(const Statement& s, int column) {
    if (s.column_is_null(column)) return std::nullopt;
    return s.column_text(column);
}

void bind_optional(Statement& s, int index, const std::optional<std::string>& value) {
    if (value) {
        s.bind_text(index, *value);
    } else {
        s.bind_null(index);
    }
}

AccountDataRecord read_account_data(const Statement& s) {
    AccountDataRecord r;
    r.user_id = s.column_text(0);
    r.room_id = s.column_text(1);
    r.type = s.column_text(2);
    r.content = s.column_text(3);
    r.stream_pos = s.column_int(4);
    return r;
}

DeviceKeysRecord read_device_keys(const Statement& s) {
    return DeviceKeysRecord{s.column_text(0), s.column_text(1), s.column_text(2)};
}

E2eKeyRecord read_e2e_key(const Statement& s) {
    return E2eKeyRecord{s.column_text(0), s.column_text(1), s.column_text(2), s.column_text(3),
                        s.column_text(4)};
}

ToDeviceRecord read_to_device(const Statement& s) {
    ToDeviceRecord r;
    r.stream_pos = s.column_int(0);
    r.recipient_user = s.column_text(1);
    r.recipient_device = s.column_text(2);
    r.sender = s.column_text(3);
    r.type = s.column_text(4);
    r.content = s.column_text(5);
    return r;
}

// The next position of (scope, stream).
Result<std::int64_t> next_position(Connection& conn, std::string_view scope,
                                   std::string_view stream) {
    auto stmt = conn.prepare(kNextPosition);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, scope);
    (*stmt)->bind_text(2, stream);
    auto pos = first_row<std::int64_t>(**stmt, [](const Statement& s) { return s.column_int(0); });
    if (!pos) return pos.error();
    if (!*pos) return errors::internal("stream position not returned");
    return **pos;
}

}  // namespace

// ---- Queries ------------------------------------------------------------------------------

template <typename Base>
Result<std::optional<AccountDataRecord>> SqliteQueries<Base>::find_account_data(
    std::string_view user_id, std::string_view room_id, std::string_view type) {
    auto stmt = conn_.prepare(kFindAccountData);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, room_id);
    (*stmt)->bind_text(3, type);
    return first_row<AccountDataRecord>(**stmt, read_account_data);
}

template <typename Base>
Result<std::vector<AccountDataRecord>> SqliteQueries<Base>::account_data_since(
    std::string_view user_id, std::int64_t after_pos, int limit) {
    if (limit <= 0) return std::vector<AccountDataRecord>();
    auto stmt = conn_.prepare(kAccountDataSince);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_int(2, after_pos);
    (*stmt)->bind_int(3, limit);
    return all_rows<AccountDataRecord>(**stmt, read_account_data);
}

template <typename Base>
Result<std::optional<std::string>> SqliteQueries<Base>::find_filter(std::string_view user_id,
                                                                    std::int64_t filter_id) {
    auto stmt = conn_.prepare(kFindFilter);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_int(2, filter_id);
    return first_row<std::string>(**stmt, [](const Statement& s) { return s.column_text(0); });
}

template <typename Base>
Result<std::optional<ProfileRecord>> SqliteQueries<Base>::find_profile(std::string_view user_id) {
    auto stmt = conn_.prepare(kFindProfile);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    return first_row<ProfileRecord>(**stmt, [](const Statement& s) {
        return ProfileRecord{s.column_text(0), optional_text(s, 1), optional_text(s, 2)};
    });
}

template <typename Base>
Result<std::vector<DeviceKeysRecord>> SqliteQueries<Base>::list_device_keys(
    std::string_view user_id, std::optional<std::string_view> device_id) {
    auto stmt = conn_.prepare(device_id ? kFindDeviceKeys : kListDeviceKeys);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    if (device_id) (*stmt)->bind_text(2, *device_id);
    return all_rows<DeviceKeysRecord>(**stmt, read_device_keys);
}

template <typename Base>
Result<std::vector<std::pair<std::string, std::int64_t>>> SqliteQueries<Base>::count_one_time_keys(
    std::string_view user_id, std::string_view device_id) {
    auto stmt = conn_.prepare(kCountOneTimeKeys);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    return all_rows<std::pair<std::string, std::int64_t>>(**stmt, [](const Statement& s) {
        return std::pair<std::string, std::int64_t>(s.column_text(0), s.column_int(1));
    });
}

template <typename Base>
Result<std::vector<std::string>> SqliteQueries<Base>::unused_fallback_key_algorithms(
    std::string_view user_id, std::string_view device_id) {
    auto stmt = conn_.prepare(kUnusedFallbackAlgorithms);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    return all_rows<std::string>(**stmt, [](const Statement& s) { return s.column_text(0); });
}

template <typename Base>
Result<std::vector<ToDeviceRecord>> SqliteQueries<Base>::to_device_since(std::string_view user_id,
                                                                         std::string_view device_id,
                                                                         std::int64_t after_pos,
                                                                         int limit) {
    if (limit <= 0) return std::vector<ToDeviceRecord>();
    auto stmt = conn_.prepare(kToDeviceSince);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    (*stmt)->bind_int(3, after_pos);
    (*stmt)->bind_int(4, limit);
    return all_rows<ToDeviceRecord>(**stmt, read_to_device);
}

template <typename Base>
Result<std::vector<DeviceListChangeRecord>> SqliteQueries<Base>::device_list_changes_since(
    std::int64_t after_pos, int limit) {
    if (limit <= 0) return std::vector<DeviceListChangeRecord>();
    auto stmt = conn_.prepare(kDeviceListChangesSince);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, after_pos);
    (*stmt)->bind_int(2, limit);
    return all_rows<DeviceListChangeRecord>(**stmt, [](const Statement& s) {
        return DeviceListChangeRecord{s.column_int(0), s.column_text(1), s.column_text(2)};
    });
}

template <typename Base>
Result<std::int64_t> SqliteQueries<Base>::stream_position(std::string_view scope,
                                                          std::string_view stream) {
    auto stmt = conn_.prepare(kStreamPosition);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, scope);
    (*stmt)->bind_text(2, stream);
    auto pos = first_row<std::int64_t>(**stmt, [](const Statement& s) { return s.column_int(0); });
    if (!pos) return pos.error();
    return pos->value_or(0);
}

// The members above are instantiated here for both transactions (sqlite_txn.cpp instantiates
// the rest of SqliteQueries).
#define MYELIN_SQLITE_CLIENT_DATA_QUERIES(Base)                                                    \
    template Result<std::optional<AccountDataRecord>> SqliteQueries<Base>::find_account_data(      \
        std::string_view, std::string_view, std::string_view);                                     \
    template Result<std::vector<AccountDataRecord>> SqliteQueries<Base>::account_data_since(       \
        std::string_view, std::int64_t, int);                                                      \
    template Result<std::optional<std::string>> SqliteQueries<Base>::find_filter(std::string_view, \
                                                                                 std::int64_t);    \
    template Result<std::optional<ProfileRecord>> SqliteQueries<Base>::find_profile(               \
        std::string_view);                                                                         \
    template Result<std::vector<DeviceKeysRecord>> SqliteQueries<Base>::list_device_keys(          \
        std::string_view, std::optional<std::string_view>);                                        \
    template Result<std::vector<std::pair<std::string, std::int64_t>>>                             \
        SqliteQueries<Base>::count_one_time_keys(std::string_view, std::string_view);              \
    template Result<std::vector<std::string>> SqliteQueries<Base>::unused_fallback_key_algorithms( \
        std::string_view, std::string_view);                                                       \
    template Result<std::vector<ToDeviceRecord>> SqliteQueries<Base>::to_device_since(             \
        std::string_view, std::string_view, std::int64_t, int);                                    \
    template Result<std::vector<DeviceListChangeRecord>>                                           \
    SqliteQueries<Base>::device_list_changes_since(std::int64_t, int);                             \
    template Result<std::int64_t> SqliteQueries<Base>::stream_position(std::string_view,           \
                                                                       std::string_view);
MYELIN_SQLITE_CLIENT_DATA_QUERIES(ReadTxn)
MYELIN_SQLITE_CLIENT_DATA_QUERIES(WriteTxn)
#undef MYELIN_SQLITE_CLIENT_DATA_QUERIES

// ---- Mutations ----------------------------------------------------------------------------

Result<std::int64_t> SqliteWriteTxn::put_account_data(std::string_view user_id,
                                                      std::string_view room_id,
                                                      std::string_view type,
                                                      std::string_view content) {
    auto pos = next_position(conn_, user_id, "account_data");
    if (!pos) return pos.error();
    auto stmt = conn_.prepare(kPutAccountData);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, room_id);
    (*stmt)->bind_text(3, type);
    (*stmt)->bind_text(4, content);
    (*stmt)->bind_int(5, *pos);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return *pos;
}

Result<std::int64_t> SqliteWriteTxn::insert_filter(std::string_view user_id,
                                                   std::string_view filter_json) {
    auto stmt = conn_.prepare(kInsertFilter);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, filter_json);
    auto id = first_row<std::int64_t>(**stmt, [](const Statement& s) { return s.column_int(0); });
    if (!id) return id.error();
    if (!*id) return errors::internal("filter id not returned");
    return **id;
}

Result<void> SqliteWriteTxn::upsert_profile(const ProfileRecord& profile) {
    auto stmt = conn_.prepare(kUpsertProfile);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, profile.user_id);
    bind_optional(**stmt, 2, profile.displayname);
    bind_optional(**stmt, 3, profile.avatar_url);
    return (*stmt)->run();
}

Result<void> SqliteWriteTxn::upsert_device_keys(const DeviceKeysRecord& keys) {
    return run_texts(conn_, kUpsertDeviceKeys, keys.user_id, keys.device_id, keys.key_json);
}

Result<bool> SqliteWriteTxn::insert_one_time_key(const E2eKeyRecord& key) {
    if (auto r = run_texts(conn_, kInsertOneTimeKey, key.user_id, key.device_id, key.algorithm,
                           key.key_id, key.key_json);
        !r) {
        return r.error();
    }
    return conn_.changes() == 1;
}

Result<void> SqliteWriteTxn::upsert_fallback_key(const E2eKeyRecord& key) {
    return run_texts(conn_, kUpsertFallbackKey, key.user_id, key.device_id, key.algorithm,
                     key.key_id, key.key_json);
}

Result<std::optional<E2eKeyRecord>> SqliteWriteTxn::claim_one_time_key(std::string_view user_id,
                                                                       std::string_view device_id,
                                                                       std::string_view algorithm) {
    auto stmt = conn_.prepare(kClaimOneTimeKey);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    (*stmt)->bind_text(3, algorithm);
    return first_row<E2eKeyRecord>(**stmt, read_e2e_key);
}

Result<std::optional<E2eKeyRecord>> SqliteWriteTxn::claim_fallback_key(std::string_view user_id,
                                                                       std::string_view device_id,
                                                                       std::string_view algorithm) {
    auto stmt = conn_.prepare(kClaimFallbackKey);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    (*stmt)->bind_text(3, algorithm);
    return first_row<E2eKeyRecord>(**stmt, read_e2e_key);
}

Result<void> SqliteWriteTxn::delete_device_e2e_keys(std::string_view user_id,
                                                    std::string_view device_id) {
    for (auto sql :
         {kDeleteDeviceKeys, kDeleteOneTimeKeys, kDeleteFallbackKeys, kDeleteDeviceKeySignatures}) {
        if (auto r = run_texts(conn_, sql, user_id, device_id); !r) return r.error();
    }
    return {};
}

Result<std::int64_t> SqliteWriteTxn::record_device_list_change(std::string_view user_id,
                                                               std::string_view device_id) {
    auto pos = next_position(conn_, "", "device_lists");
    if (!pos) return pos.error();
    auto stmt = conn_.prepare(kInsertDeviceListChange);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, *pos);
    (*stmt)->bind_text(2, user_id);
    (*stmt)->bind_text(3, device_id);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return *pos;
}

Result<bool> SqliteWriteTxn::insert_to_device_txn(std::string_view user_id,
                                                  std::string_view device_id,
                                                  std::string_view txn_id, std::int64_t ts) {
    auto stmt = conn_.prepare(kInsertToDeviceTxn);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    (*stmt)->bind_text(3, txn_id);
    (*stmt)->bind_int(4, ts);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return conn_.changes() == 1;
}

Result<std::int64_t> SqliteWriteTxn::prune_to_device_txns(std::int64_t before_ts, int limit) {
    if (limit <= 0) return std::int64_t{0};  // SQLite reads a negative LIMIT as "no limit"
    auto stmt = conn_.prepare(kPruneToDeviceTxns);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, before_ts);
    (*stmt)->bind_int(2, limit);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return conn_.changes();
}

Result<std::int64_t> SqliteWriteTxn::prune_superseded_device_list_changes(int limit) {
    if (limit <= 0) return std::int64_t{0};
    auto stmt = conn_.prepare(kPruneSupersededDeviceListChanges);
    if (!stmt) return stmt.error();
    (*stmt)->bind_int(1, limit);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return conn_.changes();
}

Result<std::int64_t> SqliteWriteTxn::insert_to_device(const ToDeviceRecord& message) {
    auto pos = next_position(conn_, message.recipient_user, "to_device");
    if (!pos) return pos.error();
    auto stmt = conn_.prepare(kInsertToDevice);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, message.recipient_user);
    (*stmt)->bind_text(2, message.recipient_device);
    (*stmt)->bind_int(3, *pos);
    (*stmt)->bind_text(4, message.sender);
    (*stmt)->bind_text(5, message.type);
    (*stmt)->bind_text(6, message.content);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return *pos;
}

Result<std::int64_t> SqliteWriteTxn::delete_to_device_through(std::string_view user_id,
                                                              std::string_view device_id,
                                                              std::int64_t through_pos) {
    auto stmt = conn_.prepare(kDeleteToDeviceThrough);
    if (!stmt) return stmt.error();
    (*stmt)->bind_text(1, user_id);
    (*stmt)->bind_text(2, device_id);
    (*stmt)->bind_int(3, through_pos);
    if (auto r = (*stmt)->run(); !r) return r.error();
    return conn_.changes();
}

}  // namespace myelin::storage::sqlite
