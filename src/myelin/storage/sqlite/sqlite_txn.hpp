#pragma once

// The SQLite implementations of ReadTxn and WriteTxn: each method is one or two cached prepared
// statements on the connection the transaction was created for. They do not begin or end
// transactions themselves; the database's reader and writer threads do that around each job.
//
// Thread-safety: as the connection's (one thread at a time).

#include "myelin/storage/database.hpp"
#include "myelin/storage/sqlite/connection.hpp"
#include "myelin/storage/sqlite/sqlite_room_exec.hpp"

namespace myelin::storage::sqlite {

// The queries, shared by the read-only and the read-write transaction. `Base` is ReadTxn or
// WriteTxn (both instantiated in sqlite_txn.cpp). Each method keeps the contract of its ReadTxn
// declaration in database.hpp; storage failures come back as mapped by sqlite_error.
template <typename Base>
class SqliteQueries : public room_queries::RoomReadMethods<Base, SqliteRoomExec> {
public:
    // The room and event queries come from RoomReadMethods (storage/room_queries.hpp).
    explicit SqliteQueries(Connection& conn)
        : room_queries::RoomReadMethods<Base, SqliteRoomExec>(conn), conn_(conn) {}

    Result<std::optional<UserRecord>> find_user(std::string_view user_id) override;
    Result<std::optional<DeviceRecord>> find_device(std::string_view user_id,
                                                    std::string_view device_id) override;
    Result<std::vector<DeviceRecord>> list_devices(std::string_view user_id) override;
    Result<std::optional<SessionRecord>> find_session(std::int64_t session_id) override;
    Result<std::vector<SessionRecord>> live_sessions(
        std::string_view user_id, std::optional<std::string_view> device_id) override;
    Result<std::optional<AccessTokenLookup>> find_access_token(const TokenHash& hash) override;
    Result<std::optional<RefreshTokenLookup>> find_refresh_token(const TokenHash& hash) override;
    Result<void> for_each_live_access_token(
        const std::function<void(const AccessTokenLookup&)>& fn) override;
    Result<std::vector<SecurityEventRecord>> security_events(std::string_view user_id,
                                                             int limit) override;
    Result<std::optional<RegistrationTokenRecord>> find_registration_token(
        std::string_view token) override;
    Result<std::vector<RegistrationTokenRecord>> list_registration_tokens() override;
    Result<std::vector<RevocationRecord>> revocations_since(std::int64_t after_id,
                                                            int limit) override;
    Result<std::int64_t> latest_revocation_id() override;
    Result<std::int64_t> revocation_log_pruned_through() override;
    Result<std::vector<SessionRecord>> revoked_sessions_after(std::int64_t after_session_id,
                                                              int limit) override;
    Result<std::optional<UiaSessionRecord>> find_uia_session(std::string_view session_id) override;
    Result<std::int64_t> count_live_uia_sessions(std::int64_t min_created_ts) override;

    // ---- What clients read after login (issue #8 §1); defined in sqlite_txn_client_data.cpp ----
    Result<std::optional<AccountDataRecord>> find_account_data(std::string_view user_id,
                                                               std::string_view room_id,
                                                               std::string_view type) override;
    Result<std::vector<AccountDataRecord>> account_data_since(std::string_view user_id,
                                                              std::int64_t after_pos,
                                                              int limit) override;
    Result<std::optional<std::string>> find_filter(std::string_view user_id,
                                                   std::int64_t filter_id) override;
    Result<std::optional<ProfileRecord>> find_profile(std::string_view user_id) override;
    Result<std::vector<DeviceKeysRecord>> list_device_keys(
        std::string_view user_id, std::optional<std::string_view> device_id) override;
    Result<std::vector<std::pair<std::string, std::int64_t>>> count_one_time_keys(
        std::string_view user_id, std::string_view device_id) override;
    Result<std::vector<std::string>> unused_fallback_key_algorithms(
        std::string_view user_id, std::string_view device_id) override;
    Result<std::vector<ToDeviceRecord>> to_device_since(std::string_view user_id,
                                                        std::string_view device_id,
                                                        std::int64_t after_pos, int limit) override;
    Result<std::vector<DeviceListChangeRecord>> device_list_changes_since(std::int64_t after_pos,
                                                                          int limit) override;
    Result<std::vector<CrossSigningKeyRecord>> list_cross_signing_keys(
        std::string_view user_id) override;
    Result<std::vector<KeySignatureRecord>> list_key_signatures(
        std::string_view target_user) override;
    Result<std::int64_t> stream_position(std::string_view scope, std::string_view stream) override;

protected:
    Connection& conn_;
};

extern template class SqliteQueries<ReadTxn>;
extern template class SqliteQueries<WriteTxn>;

// A read transaction on a read-only connection.
using SqliteReadTxn = SqliteQueries<ReadTxn>;

// A write transaction on the writer's connection. Each method keeps the contract of its WriteTxn
// declaration in database.hpp. revoke_session additionally refuses (500) a timestamp <= 0 or
// RevokeReason::kNone, either of which would leave the session looking live.
// Revocation log ids come from one AUTOINCREMENT column and SQLite admits one writer at a time
// across processes, so log entries commit in id order (what revocations_since relies on).
class SqliteWriteTxn final : public SqliteQueries<WriteTxn> {
public:
    explicit SqliteWriteTxn(Connection& conn) : SqliteQueries<WriteTxn>(conn) {}

    Result<bool> insert_user(const UserRecord& user) override;
    Result<void> set_password_hash(std::string_view user_id, std::string_view hash) override;
    Result<bool> ensure_device(const DeviceRecord& device) override;
    Result<void> delete_device(std::string_view user_id, std::string_view device_id) override;
    Result<std::int64_t> insert_session(const SessionRecord& session) override;
    Result<void> insert_access_token(const AccessTokenRecord& token) override;
    Result<void> insert_refresh_token(const RefreshTokenRecord& token) override;
    Result<bool> update_session_generations(std::int64_t session_id, std::int64_t expected_current,
                                            std::int64_t new_current,
                                            std::int64_t new_used) override;
    // The statements of update_session_generations, insert_access_token, insert_refresh_token,
    // wipe_sealed_successors and a seal of the old token, in that order, in the job's
    // transaction (SQLite has no round trips to save).
    Result<bool> rotate_session(const SessionRotation& rotation) override;
    Result<void> set_sealed_successor(const TokenHash& refresh_hash,
                                      const std::vector<std::uint8_t>& sealed) override;
    Result<void> wipe_sealed_successors(std::int64_t session_id) override;
    Result<void> revoke_session(std::int64_t session_id, std::int64_t ts,
                                RevokeReason reason) override;
    Result<void> delete_session_tokens(std::int64_t session_id) override;
    Result<void> insert_security_event(const SecurityEventRecord& event) override;
    Result<bool> set_user_deactivated(std::string_view user_id, bool deactivated) override;
    Result<bool> set_user_admin(std::string_view user_id, bool is_admin) override;
    Result<bool> set_device_display_name(std::string_view user_id, std::string_view device_id,
                                         std::optional<std::string_view> display_name) override;
    Result<void> record_device_activity(std::string_view user_id, std::string_view device_id,
                                        std::int64_t ts, std::string_view ip) override;
    Result<bool> insert_registration_token(const RegistrationTokenRecord& token) override;
    Result<bool> delete_registration_token(std::string_view token) override;
    Result<bool> update_registration_token_counts(std::string_view token,
                                                  std::int64_t pending_delta,
                                                  std::int64_t completed_delta) override;
    Result<std::int64_t> prune_revocation_log(std::int64_t before_ts, int limit) override;
    Result<std::int64_t> prune_security_events(std::int64_t before_ts, int limit) override;
    Result<bool> insert_uia_session(const UiaSessionRecord& session) override;
    Result<bool> update_uia_session_stages(std::string_view session_id,
                                           const std::vector<std::string>& expected_completed,
                                           const std::vector<std::string>& completed,
                                           std::optional<std::string_view> registration_token,
                                           std::int64_t min_created_ts) override;
    Result<std::optional<UiaSessionRecord>> finish_uia_session(
        std::string_view session_id, std::int64_t min_created_ts) override;
    Result<UiaPruneResult> prune_uia_sessions(std::int64_t before_ts, int limit) override;

    // ---- What clients write after login (issue #8 §1); defined in sqlite_txn_client_data.cpp ----
    Result<std::int64_t> put_account_data(std::string_view user_id, std::string_view room_id,
                                          std::string_view type, std::string_view content) override;
    Result<std::int64_t> insert_filter(std::string_view user_id,
                                       std::string_view filter_json) override;
    Result<void> upsert_profile(const ProfileRecord& profile) override;
    Result<void> upsert_device_keys(const DeviceKeysRecord& keys) override;
    Result<bool> insert_one_time_key(const E2eKeyRecord& key) override;
    Result<void> upsert_fallback_key(const E2eKeyRecord& key) override;
    Result<std::optional<E2eKeyRecord>> claim_one_time_key(std::string_view user_id,
                                                           std::string_view device_id,
                                                           std::string_view algorithm) override;
    Result<std::optional<E2eKeyRecord>> claim_fallback_key(std::string_view user_id,
                                                           std::string_view device_id,
                                                           std::string_view algorithm) override;
    Result<void> delete_device_e2e_keys(std::string_view user_id,
                                        std::string_view device_id) override;
    Result<void> upsert_cross_signing_key(const CrossSigningKeyRecord& key) override;
    Result<void> upsert_key_signature(const KeySignatureRecord& signature) override;
    Result<void> delete_key_signatures(std::string_view target_user,
                                       std::string_view target_key) override;
    Result<std::int64_t> record_device_list_change(std::string_view user_id,
                                                   std::string_view device_id) override;
    Result<bool> insert_to_device_txn(std::string_view user_id, std::string_view device_id,
                                      std::string_view txn_id, std::int64_t ts) override;
    Result<std::int64_t> insert_to_device(const ToDeviceRecord& message) override;
    Result<std::int64_t> prune_to_device_txns(std::int64_t before_ts, int limit) override;
    Result<std::int64_t> prune_superseded_device_list_changes(int limit) override;
    Result<std::int64_t> delete_to_device_through(std::string_view user_id,
                                                  std::string_view device_id,
                                                  std::int64_t through_pos) override;
    // ---- Rooms and events (sqlite_txn_rooms.cpp, over storage/room_queries.hpp) --------------
    Result<bool> insert_room(const RoomRecord& room) override;
    Result<std::int64_t> append_event(const NewEvent& event) override;
    Result<bool> redact_event(std::string_view event_id, std::string_view redacted_json,
                              std::string_view redacted_by) override;
    Result<bool> insert_transaction(const TransactionRecord& txn) override;
    Result<bool> forget_room(std::string_view room_id, std::string_view user_id) override;
    Result<bool> insert_room_alias(const RoomAliasRecord& alias) override;
    Result<bool> delete_room_alias(std::string_view alias) override;
    Result<bool> set_room_public(std::string_view room_id, bool is_public) override;
    Result<std::optional<std::int64_t>> put_receipt(const ReceiptRecord& receipt) override;
};

}  // namespace myelin::storage::sqlite
