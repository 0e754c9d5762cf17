#pragma once

// The storage boundary: a Database hands out read and write transactions whose methods speak
// the domain (users, devices, sessions, tokens, UIA sessions), never SQL. Backends (SQLite now,
// PostgreSQL later) implement ReadTxn, WriteTxn and Database. Transactions run on the backend's own
// threads, never on network threads; coroutines await them through storage/await.hpp.
//
// Thread-safety: Database is safe to use from any thread. A ReadTxn/WriteTxn is used only by the
// job it was handed to, on the backend's thread, and only for the duration of that job.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "myelin/core/error.hpp"
#include "myelin/storage/client_data_records.hpp"
#include "myelin/storage/rate_limit_exchange.hpp"
#include "myelin/storage/records.hpp"
#include "myelin/storage/room_records.hpp"
#include "myelin/storage/session_feed.hpp"
#include "myelin/storage/wake_channel.hpp"

namespace myelin::storage {

// Queries. Every method returns a storage error (503) only when the backend itself fails.
class ReadTxn {
public:
    virtual ~ReadTxn() = default;

    // The user with this MXID, or nullopt.
    virtual Result<std::optional<UserRecord>> find_user(std::string_view user_id) = 0;
    // The device, or nullopt.
    virtual Result<std::optional<DeviceRecord>> find_device(std::string_view user_id,
                                                            std::string_view device_id) = 0;
    // All devices of a user, ordered by device_id.
    virtual Result<std::vector<DeviceRecord>> list_devices(std::string_view user_id) = 0;
    // The session, or nullopt.
    virtual Result<std::optional<SessionRecord>> find_session(std::int64_t session_id) = 0;
    // Live (not revoked) sessions of one device, or of every device when device_id is nullopt.
    virtual Result<std::vector<SessionRecord>> live_sessions(
        std::string_view user_id, std::optional<std::string_view> device_id) = 0;
    // The access token with this hash joined with its session (revoked sessions included).
    virtual Result<std::optional<AccessTokenLookup>> find_access_token(const TokenHash& hash) = 0;
    // The refresh token with this hash joined with its session (revoked sessions included).
    virtual Result<std::optional<RefreshTokenLookup>> find_refresh_token(const TokenHash& hash) = 0;
    // Calls `fn` for every access token of a live session whose generation is still usable
    // (generation >= the session's used_generation), to warm the token cache at start-up.
    virtual Result<void> for_each_live_access_token(
        const std::function<void(const AccessTokenLookup&)>& fn) = 0;
    // The user's security events, newest first, at most `limit`.
    virtual Result<std::vector<SecurityEventRecord>> security_events(std::string_view user_id,
                                                                     int limit) = 0;
    // The registration token, or nullopt.
    virtual Result<std::optional<RegistrationTokenRecord>> find_registration_token(
        std::string_view token) = 0;
    // Every registration token (expired and used-up ones included), ordered by token.
    virtual Result<std::vector<RegistrationTokenRecord>> list_registration_tokens() = 0;
    // The revocation log entries with id > `after_id`, oldest first, at most `limit` (none when
    // limit <= 0). An entry becomes visible only after every entry with a smaller id did, so a
    // follower that remembers the last id it saw never misses one.
    virtual Result<std::vector<RevocationRecord>> revocations_since(std::int64_t after_id,
                                                                    int limit) = 0;
    // The id of the newest revocation log entry ever written, pruned ones included (0 when there
    // has never been one): where a follower starts (after warming its cache from the live
    // tokens).
    virtual Result<std::int64_t> latest_revocation_id() = 0;
    // The highest id of any revocation log entry pruned so far (0 when none was). A follower
    // whose last seen id is below it may have missed pruned entries, and must re-read the
    // revoked sessions themselves (revoked_sessions_after).
    virtual Result<std::int64_t> revocation_log_pruned_through() = 0;
    // Revoked sessions with session_id > `after_session_id`, ordered by session_id, at most
    // `limit` (none when limit <= 0): for a follower that lost its place in the revocation log.
    virtual Result<std::vector<SessionRecord>> revoked_sessions_after(std::int64_t after_session_id,
                                                                      int limit) = 0;
    // The UIA session with this id, or nullopt. Finished and expired ones are returned too: the
    // caller decides.
    virtual Result<std::optional<UiaSessionRecord>> find_uia_session(
        std::string_view session_id) = 0;
    // How many UIA sessions are unfinished and have created_ts >= `min_created_ts`.
    virtual Result<std::int64_t> count_live_uia_sessions(std::int64_t min_created_ts) = 0;

    // ---- What clients read after login (issue #8 §1; client_data_records.hpp) ---------------
    // The account-data entry (room_id empty: global), or nullopt.
    virtual Result<std::optional<AccountDataRecord>> find_account_data(std::string_view user_id,
                                                                       std::string_view room_id,
                                                                       std::string_view type) = 0;
    // The user's account-data entries (global and per room) with stream_pos > `after_pos`,
    // oldest first, at most `limit` (none when limit <= 0): for /sync.
    virtual Result<std::vector<AccountDataRecord>> account_data_since(std::string_view user_id,
                                                                      std::int64_t after_pos,
                                                                      int limit) = 0;
    // The filter JSON the user stored under `filter_id`, or nullopt.
    virtual Result<std::optional<std::string>> find_filter(std::string_view user_id,
                                                           std::int64_t filter_id) = 0;
    // The user's profile row, or nullopt when none was ever written.
    virtual Result<std::optional<ProfileRecord>> find_profile(std::string_view user_id) = 0;
    // The uploaded device keys of the user's devices (of one device when `device_id` is given),
    // ordered by device_id.
    virtual Result<std::vector<DeviceKeysRecord>> list_device_keys(
        std::string_view user_id, std::optional<std::string_view> device_id) = 0;
    // How many unclaimed one-time keys the device has, per algorithm (algorithms without keys
    // left out), ordered by algorithm.
    virtual Result<std::vector<std::pair<std::string, std::int64_t>>> count_one_time_keys(
        std::string_view user_id, std::string_view device_id) = 0;
    // The algorithms of the device's fallback keys not yet claimed, ordered.
    virtual Result<std::vector<std::string>> unused_fallback_key_algorithms(
        std::string_view user_id, std::string_view device_id) = 0;
    // The device's to-device messages with stream_pos > `after_pos`, oldest first, at most
    // `limit` (none when limit <= 0): for /sync.
    virtual Result<std::vector<ToDeviceRecord>> to_device_since(std::string_view user_id,
                                                                std::string_view device_id,
                                                                std::int64_t after_pos,
                                                                int limit) = 0;
    // Device-list changes with stream_pos > `after_pos`, oldest first, at most `limit` (none
    // when limit <= 0): for /sync and /keys/changes.
    virtual Result<std::vector<DeviceListChangeRecord>> device_list_changes_since(
        std::int64_t after_pos, int limit) = 0;
    // The user's cross-signing keys, ordered by key_type.
    virtual Result<std::vector<CrossSigningKeyRecord>> list_cross_signing_keys(
        std::string_view user_id) = 0;
    // The uploaded signatures of the user's keys (device keys and cross-signing keys), ordered
    // by (target_key, signer_user, signer_key_id).
    virtual Result<std::vector<KeySignatureRecord>> list_key_signatures(
        std::string_view target_user) = 0;
    // The newest position handed out on a stream (0 when none was): `scope` is a user ID for
    // the per-user streams "account_data" and "to_device", "" for the global "device_lists".
    virtual Result<std::int64_t> stream_position(std::string_view scope,
                                                 std::string_view stream) = 0;
    // ---- Rooms and events (room_records.hpp; SQL in *_txn_rooms.cpp) -------------------------
    // The room, or nullopt.
    virtual Result<std::optional<RoomRecord>> find_room(std::string_view room_id) = 0;
    // The event with this ID (in any room), or nullopt.
    virtual Result<std::optional<EventRecord>> find_event(std::string_view event_id) = 0;
    // The room's current state, ordered by (type, state_key).
    virtual Result<std::vector<StateEntry>> room_state(std::string_view room_id) = 0;
    // The current state event at (type, state_key), or nullopt.
    virtual Result<std::optional<EventRecord>> state_event(std::string_view room_id,
                                                           std::string_view type,
                                                           std::string_view state_key) = 0;
    // The room's current state events, ordered by (type, state_key).
    virtual Result<std::vector<EventRecord>> state_events(std::string_view room_id) = 0;
    // The room's forward extremities, ordered by event_id.
    virtual Result<std::vector<ExtremityRecord>> forward_extremities(std::string_view room_id) = 0;
    // The room's events within `range` (see EventRange).
    virtual Result<std::vector<EventRecord>> room_events(std::string_view room_id,
                                                         const EventRange& range) = 0;
    // The highest stream ordering of any event (0 when there is none).
    virtual Result<std::int64_t> max_stream_ordering() = 0;
    // The rooms with at least one event in (after, upto], each once, ordered by room_id, at most
    // `limit` (none when limit <= 0). Reads every event of that range (a primary-key range):
    // callers keep the range short.
    virtual Result<std::vector<std::string>> rooms_with_events(std::int64_t after,
                                                               std::int64_t upto, int limit) = 0;
    // The user's membership of the room, or nullopt when they never had one.
    virtual Result<std::optional<MembershipRecord>> find_membership(std::string_view room_id,
                                                                    std::string_view user_id) = 0;
    // Every room membership of the user (any membership), ordered by room_id.
    virtual Result<std::vector<MembershipRecord>> user_memberships(std::string_view user_id) = 0;
    // The memberships of the user that changed after stream position `after`, oldest change
    // first, at most `limit` (none when limit <= 0).
    virtual Result<std::vector<MembershipRecord>> membership_changes_since(std::string_view user_id,
                                                                           std::int64_t after,
                                                                           int limit) = 0;
    // Every membership of the room (any membership), ordered by user_id.
    virtual Result<std::vector<MembershipRecord>> room_members(std::string_view room_id) = 0;
    // The event a client transaction created, or nullopt.
    virtual Result<std::optional<std::string>> find_transaction(std::string_view user_id,
                                                                std::string_view device_id,
                                                                std::string_view room_id,
                                                                std::string_view txn_id) = 0;
    // The local alias, or nullopt.
    virtual Result<std::optional<RoomAliasRecord>> find_room_alias(std::string_view alias) = 0;
    // The aliases of a room, ordered by alias.
    virtual Result<std::vector<RoomAliasRecord>> room_aliases(std::string_view room_id) = 0;
    // Public rooms (is_public) with room_id > `after_room_id`, ordered by room_id, at most
    // `limit` (none when limit <= 0).
    virtual Result<std::vector<RoomRecord>> public_rooms(std::string_view after_room_id,
                                                         int limit) = 0;
    // The room's receipts with stream_pos > `after_pos` that `viewer` may see (every "m.read",
    // and "m.read.private" only of the viewer), ordered by stream_pos. Every receipt of the room
    // is at most (members x receipt types x threads), so there is no limit.
    virtual Result<std::vector<ReceiptRecord>> room_receipts_since(std::string_view room_id,
                                                                   std::int64_t after_pos,
                                                                   std::string_view viewer) = 0;
};

// Mutations. Inside one write job they are atomic: all of a job's changes commit together or
// none do (a job that returns an error is rolled back). Commits are durable before the job's
// result is delivered.
class WriteTxn : public ReadTxn {
public:
    // Inserts a user. Returns false (and changes nothing) if the user_id exists.
    virtual Result<bool> insert_user(const UserRecord& user) = 0;
    // Replaces the password hash of an existing user.
    virtual Result<void> set_password_hash(std::string_view user_id, std::string_view hash) = 0;
    // Inserts the device, or leaves an existing one (and its display name) as it is.
    // Returns true if it was created.
    virtual Result<bool> ensure_device(const DeviceRecord& device) = 0;
    // Deletes a device row (its sessions are revoked separately). No-op if absent.
    virtual Result<void> delete_device(std::string_view user_id, std::string_view device_id) = 0;
    // Inserts a session and returns its new session_id (session.session_id is ignored).
    virtual Result<std::int64_t> insert_session(const SessionRecord& session) = 0;
    virtual Result<void> insert_access_token(const AccessTokenRecord& token) = 0;
    virtual Result<void> insert_refresh_token(const RefreshTokenRecord& token) = 0;
    // Compare-and-swap of a live session's generations: sets current/used generation only if
    // the stored current_generation equals `expected_current` and the session is live.
    // Returns false if nothing matched.
    virtual Result<bool> update_session_generations(std::int64_t session_id,
                                                    std::int64_t expected_current,
                                                    std::int64_t new_current,
                                                    std::int64_t new_used) = 0;
    // A refresh-token rotation in one step: the compare-and-swap of update_session_generations
    // (session_id, expected_current -> new_current, new_used; live sessions only) and, only if
    // it matched, the insert of the new access and refresh tokens, the wipe of every other sealed
    // successor of the session and the store of old_sealed_successor on old_refresh_hash (none
    // when empty). Returns false, having changed nothing, when the CAS did not match. A session
    // change it commits is published like update_session_generations' (session_feed.hpp). A
    // failure (e.g. a token hash that exists) is an error; the job then rolls back. Measured, not
    // used: the service writes a rotation with the separate calls, which were faster on
    // PostgreSQL under concurrency (bench/README.md).
    virtual Result<bool> rotate_session(const SessionRotation& rotation) = 0;
    // Stores (or, with an empty blob, wipes) the sealed successor pair on a refresh token.
    virtual Result<void> set_sealed_successor(const TokenHash& refresh_hash,
                                              const std::vector<std::uint8_t>& sealed) = 0;
    // Wipes every sealed successor of the session.
    virtual Result<void> wipe_sealed_successors(std::int64_t session_id) = 0;
    // Marks a live session revoked (no-op on an already revoked one) and wipes its sealed
    // successors. Token rows stay, so that their presentation can be answered precisely. When it
    // revoked a live session, it also appends (session_id, reason, ts) to the revocation log.
    virtual Result<void> revoke_session(std::int64_t session_id, std::int64_t ts,
                                        RevokeReason reason) = 0;
    // Deletes the session's token rows (after logout a token is simply unknown).
    virtual Result<void> delete_session_tokens(std::int64_t session_id) = 0;
    // Appends a security event.
    virtual Result<void> insert_security_event(const SecurityEventRecord& event) = 0;
    // Sets the user's deactivated flag (the row stays, so the user_id can never be registered
    // again). Returns false if there is no such user.
    virtual Result<bool> set_user_deactivated(std::string_view user_id, bool deactivated) = 0;
    // Sets the user's admin flag. Returns false if there is no such user.
    virtual Result<bool> set_user_admin(std::string_view user_id, bool is_admin) = 0;
    // Sets (or, with nullopt, clears) a device's display name. Returns false if there is no
    // such device.
    virtual Result<bool> set_device_display_name(std::string_view user_id,
                                                 std::string_view device_id,
                                                 std::optional<std::string_view> display_name) = 0;
    // Records that the device was seen at `ts` from `ip`. Only moves forward: a `ts` not newer
    // than the stored last_seen_ts changes nothing (batches may arrive out of order). No-op if
    // the device does not exist (it may have been deleted since).
    virtual Result<void> record_device_activity(std::string_view user_id,
                                                std::string_view device_id, std::int64_t ts,
                                                std::string_view ip) = 0;
    // Inserts a registration token with the given uses_allowed, expiry_ts and created_ts
    // (pending and completed start at 0, whatever the record says). Returns false (and changes
    // nothing) if the token exists.
    virtual Result<bool> insert_registration_token(const RegistrationTokenRecord& token) = 0;
    // Deletes the registration token. Returns false if there was none.
    virtual Result<bool> delete_registration_token(std::string_view token) = 0;
    // Adds the deltas (negative to release) to the token's pending and completed counts; a
    // count never goes below zero (it stops at 0). Does not check uses_allowed or expiry: the
    // caller reads the token in the same write job and decides. Returns false if there is no
    // such token.
    virtual Result<bool> update_registration_token_counts(std::string_view token,
                                                          std::int64_t pending_delta,
                                                          std::int64_t completed_delta) = 0;
    // Deletes up to `limit` revocation log entries with ts < `before_ts` (oldest first; none when
    // limit <= 0) and raises revocation_log_pruned_through() to the highest id deleted. Returns
    // how many were deleted.
    virtual Result<std::int64_t> prune_revocation_log(std::int64_t before_ts, int limit) = 0;
    // Deletes up to `limit` security events with ts < `before_ts`, of any user (oldest first;
    // none when limit <= 0). Returns how many were deleted.
    virtual Result<std::int64_t> prune_security_events(std::int64_t before_ts, int limit) = 0;
    // Inserts a UIA session with every field as given. Returns false (and changes nothing) if
    // the session_id exists.
    virtual Result<bool> insert_uia_session(const UiaSessionRecord& session) = 0;
    // Compare-and-swap of a UIA session's stages: sets `completed` (and, when given,
    // registration_token) only if the session is unfinished, has created_ts >= `min_created_ts`
    // and its stored completed list equals `expected_completed`. Returns false if nothing matched.
    virtual Result<bool> update_uia_session_stages(
        std::string_view session_id, const std::vector<std::string>& expected_completed,
        const std::vector<std::string>& completed,
        std::optional<std::string_view> registration_token, std::int64_t min_created_ts) = 0;
    // Uses a UIA session up: marks it finished only if it is unfinished and has created_ts >=
    // `min_created_ts`, and returns it as stored afterwards (its registration_token now belongs
    // to the caller). Returns nullopt if nothing matched: of concurrent callers on any number of
    // processes, exactly one gets the session.
    virtual Result<std::optional<UiaSessionRecord>> finish_uia_session(
        std::string_view session_id, std::int64_t min_created_ts) = 0;
    // Deletes up to `limit` UIA sessions with created_ts < `before_ts` (oldest first; none when
    // limit <= 0), finished or not. Returns how many were deleted and the registration tokens the
    // unfinished ones held (the caller releases them in the same job).
    virtual Result<UiaPruneResult> prune_uia_sessions(std::int64_t before_ts, int limit) = 0;

    // ---- What clients write after login (issue #8 §1; client_data_records.hpp) --------------
    // Stores (inserts or replaces) an account-data entry at the next position of the user's
    // "account_data" stream, and returns that position.
    virtual Result<std::int64_t> put_account_data(std::string_view user_id,
                                                  std::string_view room_id, std::string_view type,
                                                  std::string_view content) = 0;
    // Stores a filter for the user under the next free filter id (per user, from 0) and
    // returns that id.
    virtual Result<std::int64_t> insert_filter(std::string_view user_id,
                                               std::string_view filter_json) = 0;
    // Inserts or replaces the user's profile row.
    virtual Result<void> upsert_profile(const ProfileRecord& profile) = 0;
    // Inserts or replaces the device's keys.
    virtual Result<void> upsert_device_keys(const DeviceKeysRecord& keys) = 0;
    // Inserts a one-time key. Returns false (and changes nothing) if the device already has a
    // key with this algorithm and key_id.
    virtual Result<bool> insert_one_time_key(const E2eKeyRecord& key) = 0;
    // Inserts or replaces the device's fallback key of the key's algorithm, unclaimed.
    virtual Result<void> upsert_fallback_key(const E2eKeyRecord& key) = 0;
    // Removes and returns one one-time key of the device for the algorithm (the smallest
    // key_id), or nullopt when it has none. Of concurrent claims, each gets a different key.
    virtual Result<std::optional<E2eKeyRecord>> claim_one_time_key(std::string_view user_id,
                                                                   std::string_view device_id,
                                                                   std::string_view algorithm) = 0;
    // The device's fallback key for the algorithm, marked claimed (it stays until replaced), or
    // nullopt when it has none.
    virtual Result<std::optional<E2eKeyRecord>> claim_fallback_key(std::string_view user_id,
                                                                   std::string_view device_id,
                                                                   std::string_view algorithm) = 0;
    // Deletes every key (device keys, one-time and fallback keys) of the device, and the
    // uploaded signatures of its device keys.
    virtual Result<void> delete_device_e2e_keys(std::string_view user_id,
                                                std::string_view device_id) = 0;
    // Inserts or replaces the user's cross-signing key of record.key_type.
    virtual Result<void> upsert_cross_signing_key(const CrossSigningKeyRecord& key) = 0;
    // Inserts or replaces the signature of (target_user, target_key) by (signer_user,
    // signer_key_id).
    virtual Result<void> upsert_key_signature(const KeySignatureRecord& signature) = 0;
    // Deletes every uploaded signature of the key (target_user, target_key). No-op if none.
    virtual Result<void> delete_key_signatures(std::string_view target_user,
                                               std::string_view target_key) = 0;
    // Appends a device-list change at the next position of the global "device_lists" stream
    // and returns that position.
    virtual Result<std::int64_t> record_device_list_change(std::string_view user_id,
                                                           std::string_view device_id) = 0;
    // Records a to-device transaction of the sending device. Returns false (and changes
    // nothing) if that device already used `txn_id`.
    virtual Result<bool> insert_to_device_txn(std::string_view user_id, std::string_view device_id,
                                              std::string_view txn_id, std::int64_t ts) = 0;
    // Deletes up to `limit` to-device transaction records created before `before_ts` (none when
    // limit <= 0): a sender retrying such a transaction is no longer recognised. Returns how many
    // were deleted.
    virtual Result<std::int64_t> prune_to_device_txns(std::int64_t before_ts, int limit) = 0;
    // Deletes up to `limit` device-list changes superseded by a later change of the same
    // (user, device) (none when limit <= 0). Every "changed after position P" answer stays the
    // same: whatever a deleted row answered, the later row of that device answers too. Returns
    // how many were deleted.
    virtual Result<std::int64_t> prune_superseded_device_list_changes(int limit) = 0;
    // Queues a to-device message (message.stream_pos is ignored) at the next position of the
    // recipient user's "to_device" stream and returns that position.
    virtual Result<std::int64_t> insert_to_device(const ToDeviceRecord& message) = 0;
    // Deletes the device's to-device messages with stream_pos <= `through_pos` (delivered).
    // Returns how many were deleted.
    virtual Result<std::int64_t> delete_to_device_through(std::string_view user_id,
                                                          std::string_view device_id,
                                                          std::int64_t through_pos) = 0;
    // ---- Rooms and events (room_records.hpp; SQL in *_txn_rooms.cpp) -------------------------
    // Inserts a room. Returns false (and changes nothing) if the room_id exists.
    virtual Result<bool> insert_room(const RoomRecord& room) = 0;
    // Appends an event to its room, all or nothing within the job: the event row with the next
    // stream ordering (returned), the current state at (type, state_key) when it is a state
    // event, the member's membership (forgotten cleared) when `membership` is set, and the
    // forward extremities (the event replaces its prev_events). Error (500) when the event ID
    // exists.
    virtual Result<std::int64_t> append_event(const NewEvent& event) = 0;
    // Replaces a stored event's JSON with its redacted form and records the redaction's ID.
    // Returns false if there is no such event. The stream ordering stays.
    virtual Result<bool> redact_event(std::string_view event_id, std::string_view redacted_json,
                                      std::string_view redacted_by) = 0;
    // Records a client transaction. Returns false (and changes nothing) if one with the same
    // (user, device, room, txn_id) exists.
    virtual Result<bool> insert_transaction(const TransactionRecord& txn) = 0;
    // Marks the user's membership of the room forgotten. Returns false if they have none.
    virtual Result<bool> forget_room(std::string_view room_id, std::string_view user_id) = 0;
    // Inserts a local alias. Returns false (and changes nothing) if the alias exists.
    virtual Result<bool> insert_room_alias(const RoomAliasRecord& alias) = 0;
    // Deletes a local alias. Returns false if there was none.
    virtual Result<bool> delete_room_alias(std::string_view alias) = 0;
    // Lists the room in (or removes it from) the public room directory. Returns false if there
    // is no such room.
    virtual Result<bool> set_room_public(std::string_view room_id, bool is_public) = 0;
    // Stores the receipt (receipt.stream_pos is ignored) at the next position of the global
    // "receipts" stream and returns that position, unless the stored receipt of the same
    // (room_id, user_id, receipt_type, thread_id) is at or after receipt.event_stream_ordering:
    // then nothing changes and the answer is nullopt (receipts only move forward).
    virtual Result<std::optional<std::int64_t>> put_receipt(const ReceiptRecord& receipt) = 0;
};

// A read job runs on a reader thread with a read transaction (a consistent snapshot). `txn` is
// null when the database cannot serve reads (closed, or the connection failed): the job must
// then answer its caller with an error.
using ReadJob = std::function<void(ReadTxn* txn)>;
// The stream counters shared by every user (the stream_positions rows of scope ""), which write
// jobs from all over the server bump. A write job names those it bumps (WriteJob::counters) so
// that a backend whose writers run at the same time (PostgreSQL) takes such jobs one at a time
// instead of letting them lose serialization races and run again. Naming none is never wrong,
// only slower under contention.
enum SharedCounter : unsigned {
    kEventsCounter = 1u << 0,       // events: append_event
    kReceiptsCounter = 1u << 1,     // receipts: put_receipt
    kDeviceListsCounter = 1u << 2,  // device_lists: record_device_list_change
};
// A set of SharedCounter bits.
using SharedCounters = unsigned;
inline constexpr SharedCounters kAllSharedCounters =
    kEventsCounter | kReceiptsCounter | kDeviceListsCounter;

// A write job runs on the writer thread inside the shared commit; it returns an error to roll
// back its own changes. `on_committed(ok_error)` runs on the writer thread after the commit
// (or the failed commit) and must only hand the result off (e.g. post to an executor).
// `counters`: the shared counters run() may bump (see SharedCounter).
struct WriteJob {
    std::function<Result<void>(WriteTxn&)> run;
    std::function<void(const Result<void>&)> on_committed;
    SharedCounters counters = 0;
};

class Database {
public:
    virtual ~Database() = default;
    // Queues a read job. Thread-safe, never blocks on I/O. Every job is run exactly once, also
    // after close() (then with a null txn).
    virtual void post_read(ReadJob job) = 0;
    // Queues a write job; jobs queued together share one durable commit (group commit). Every
    // job's on_committed runs exactly once; after close() it runs with an error and no run().
    virtual void post_write(WriteJob job) = 0;
    // Stops accepting jobs, finishes queued ones, closes connections. Idempotent.
    virtual void close() = 0;
    // A short name for logs ("sqlite", "postgresql").
    virtual std::string backend_name() const = 0;
    // A feed of session changes committed by any process on this database (see
    // session_feed.hpp), not yet started; nullptr when the backend has none (SQLite). Each
    // call makes a new feed with its own connection.
    virtual std::unique_ptr<SessionFeed> open_session_feed() { return nullptr; }
    // A channel that carries /sync wake-ups to the other processes on this database (see
    // wake_channel.hpp), not yet started; nullptr when the backend has none (SQLite). Each call
    // makes a new channel with its own connections.
    virtual std::unique_ptr<WakeChannel> open_wake_channel() { return nullptr; }
    // Shared rate-limit buckets for several instances (see rate_limit_exchange.hpp), with
    // their own connection; nullptr when the backend serves one process only (SQLite). Error
    // (503) when the connection cannot be made.
    virtual Result<std::unique_ptr<RateLimitExchange>> open_rate_limit_exchange() {
        return std::unique_ptr<RateLimitExchange>();
    }
};

}  // namespace myelin::storage
