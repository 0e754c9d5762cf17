#pragma once

// The SQL of the room and event methods (database.hpp, "Rooms and events"), shared by both
// backends: written with SQLite's "?N" placeholders, which the PostgreSQL backend turns into
// "$N" (postgres_placeholders). Only statements both dialects read alike are here (booleans are
// bound as parameters or read with NOT, never written as literals).
//
// Column lists are spelled out in the order room_row_readers.hpp reads them.

#include <string>
#include <string_view>

namespace myelin::storage::room_sql {

#define MYELIN_EVENT_COLUMNS                                                             \
    "e.stream_ordering, e.event_id, e.room_id, e.depth, e.type, e.state_key, e.sender, " \
    "e.origin_server_ts, e.json, e.redacted_by "
#define MYELIN_MEMBERSHIP_COLUMNS \
    "room_id, user_id, membership, event_id, stream_ordering, forgotten "

inline constexpr std::string_view kFindRoom =
    "SELECT room_id, room_version, creator, created_ts, is_public FROM rooms WHERE room_id = ?1";
inline constexpr std::string_view kInsertRoom =
    "INSERT INTO rooms (room_id, room_version, creator, created_ts, is_public) "
    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (room_id) DO NOTHING";
inline constexpr std::string_view kSetRoomPublic =
    "UPDATE rooms SET is_public = ?2 WHERE room_id = ?1";
inline constexpr std::string_view kPublicRooms =
    "SELECT room_id, room_version, creator, created_ts, is_public FROM rooms "
    "WHERE is_public AND room_id > ?1 ORDER BY room_id LIMIT ?2";

inline constexpr std::string_view kFindEvent =
    "SELECT " MYELIN_EVENT_COLUMNS "FROM events AS e WHERE e.event_id = ?1";
inline constexpr std::string_view kRoomState =
    "SELECT type, state_key, event_id FROM room_state WHERE room_id = ?1 "
    "ORDER BY type, state_key";
inline constexpr std::string_view kStateEvent =
    "SELECT " MYELIN_EVENT_COLUMNS
    "FROM room_state AS s JOIN events AS e ON e.event_id = s.event_id "
    "WHERE s.room_id = ?1 AND s.type = ?2 AND s.state_key = ?3";
inline constexpr std::string_view kStateEvents =
    "SELECT " MYELIN_EVENT_COLUMNS
    "FROM room_state AS s JOIN events AS e ON e.event_id = s.event_id "
    "WHERE s.room_id = ?1 ORDER BY s.type, s.state_key";
inline constexpr std::string_view kForwardExtremities =
    "SELECT f.event_id, e.depth FROM room_forward_extremities AS f "
    "JOIN events AS e ON e.event_id = f.event_id WHERE f.room_id = ?1 ORDER BY f.event_id";
inline constexpr std::string_view kRoomEventsForwards =
    "SELECT " MYELIN_EVENT_COLUMNS
    "FROM events AS e WHERE e.room_id = ?1 AND e.stream_ordering > ?2 "
    "AND e.stream_ordering <= ?3 ORDER BY e.stream_ordering LIMIT ?4";
inline constexpr std::string_view kRoomEventsBackwards =
    "SELECT " MYELIN_EVENT_COLUMNS
    "FROM events AS e WHERE e.room_id = ?1 AND e.stream_ordering > ?2 "
    "AND e.stream_ordering <= ?3 ORDER BY e.stream_ordering DESC LIMIT ?4";
inline constexpr std::string_view kMaxStreamOrdering =
    "SELECT COALESCE(MAX(stream_ordering), 0) FROM events";
inline constexpr std::string_view kRoomsWithEvents =
    "SELECT DISTINCT room_id FROM events WHERE stream_ordering > ?1 AND stream_ordering <= ?2 "
    "ORDER BY room_id LIMIT ?3";

inline constexpr std::string_view kFindMembership =
    "SELECT " MYELIN_MEMBERSHIP_COLUMNS "FROM room_memberships WHERE room_id = ?1 AND user_id = ?2";
inline constexpr std::string_view kUserMemberships =
    "SELECT " MYELIN_MEMBERSHIP_COLUMNS "FROM room_memberships WHERE user_id = ?1 ORDER BY room_id";
inline constexpr std::string_view kMembershipChangesSince =
    "SELECT " MYELIN_MEMBERSHIP_COLUMNS
    "FROM room_memberships WHERE user_id = ?1 AND stream_ordering > ?2 "
    "ORDER BY stream_ordering LIMIT ?3";
inline constexpr std::string_view kRoomMembers =
    "SELECT " MYELIN_MEMBERSHIP_COLUMNS "FROM room_memberships WHERE room_id = ?1 ORDER BY user_id";
inline constexpr std::string_view kForgetRoom =
    "UPDATE room_memberships SET forgotten = ?3 WHERE room_id = ?1 AND user_id = ?2";

inline constexpr std::string_view kFindTransaction =
    "SELECT event_id FROM room_transactions "
    "WHERE user_id = ?1 AND device_id = ?2 AND room_id = ?3 AND txn_id = ?4";
inline constexpr std::string_view kInsertTransaction =
    "INSERT INTO room_transactions (user_id, device_id, room_id, txn_id, event_id, ts) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id, device_id, room_id, txn_id) "
    "DO NOTHING";

inline constexpr std::string_view kFindRoomAlias =
    "SELECT alias, room_id, creator, created_ts FROM room_aliases WHERE alias = ?1";
inline constexpr std::string_view kRoomAliases =
    "SELECT alias, room_id, creator, created_ts FROM room_aliases WHERE room_id = ?1 "
    "ORDER BY alias";
inline constexpr std::string_view kInsertRoomAlias =
    "INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (alias) DO NOTHING";
inline constexpr std::string_view kDeleteRoomAlias = "DELETE FROM room_aliases WHERE alias = ?1";

// append_event, in this order. The counter row is created on first use.
inline constexpr std::string_view kNextStreamOrdering =
    "INSERT INTO stream_positions (scope, stream, position) VALUES ('', 'events', 1) "
    "ON CONFLICT (scope, stream) DO UPDATE SET position = stream_positions.position + 1 "
    "RETURNING position";
inline constexpr std::string_view kInsertEvent =
    "INSERT INTO events (stream_ordering, event_id, room_id, depth, type, state_key, sender, "
    "origin_server_ts, json, redacted_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)";
inline constexpr std::string_view kSetState =
    "INSERT INTO room_state (room_id, type, state_key, event_id) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id";
inline constexpr std::string_view kSetMembership =
    "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering, "
    "forgotten) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (room_id, user_id) DO UPDATE SET "
    "membership = excluded.membership, event_id = excluded.event_id, "
    "stream_ordering = excluded.stream_ordering, forgotten = excluded.forgotten";
inline constexpr std::string_view kDeleteExtremity =
    "DELETE FROM room_forward_extremities WHERE room_id = ?1 AND event_id = ?2";
inline constexpr std::string_view kInsertExtremity =
    "INSERT INTO room_forward_extremities (room_id, event_id) VALUES (?1, ?2) "
    "ON CONFLICT (room_id, event_id) DO NOTHING";
inline constexpr std::string_view kRedactEvent =
    "UPDATE events SET json = ?2, redacted_by = ?3 WHERE event_id = ?1";

// Receipts (put_receipt, room_receipts_since).
#define MYELIN_RECEIPT_COLUMNS                                                         \
    "room_id, user_id, receipt_type, thread_id, event_id, event_stream_ordering, ts, " \
    "stream_pos "
inline constexpr std::string_view kReceiptPosition =
    "SELECT event_stream_ordering FROM receipts "
    "WHERE room_id = ?1 AND user_id = ?2 AND receipt_type = ?3 AND thread_id = ?4";
inline constexpr std::string_view kNextReceiptPosition =
    "INSERT INTO stream_positions (scope, stream, position) VALUES ('', 'receipts', 1) "
    "ON CONFLICT (scope, stream) DO UPDATE SET position = stream_positions.position + 1 "
    "RETURNING position";
inline constexpr std::string_view kPutReceipt =
    "INSERT INTO receipts (" MYELIN_RECEIPT_COLUMNS
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
    "ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET "
    "event_id = excluded.event_id, event_stream_ordering = excluded.event_stream_ordering, "
    "ts = excluded.ts, stream_pos = excluded.stream_pos";
inline constexpr std::string_view kRoomReceiptsSince =
    "SELECT " MYELIN_RECEIPT_COLUMNS
    "FROM receipts WHERE room_id = ?1 AND stream_pos > ?2 "
    "AND (receipt_type <> 'm.read.private' OR user_id = ?3) ORDER BY stream_pos";

#undef MYELIN_RECEIPT_COLUMNS
#undef MYELIN_EVENT_COLUMNS
#undef MYELIN_MEMBERSHIP_COLUMNS

// `sql` with every "?N" turned into "$N" (PostgreSQL's placeholders).
inline std::string postgres_placeholders(std::string_view sql) {
    std::string out(sql);
    for (char& c : out) {
        if (c == '?') c = '$';
    }
    return out;
}

}  // namespace myelin::storage::room_sql
