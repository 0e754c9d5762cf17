#pragma once

// Result rows of the room statements (room_sql.hpp) as records, for every SQL backend (row
// types as in row_readers.hpp). Pure functions of the row.

#include "myelin/storage/room_records.hpp"

namespace myelin::storage::rows {

// room_id, room_version, creator, created_ts, is_public
template <typename Row>
RoomRecord read_room(const Row& r) {
    RoomRecord room;
    room.room_id = r.column_text(0);
    room.room_version = r.column_text(1);
    room.creator = r.column_text(2);
    room.created_ts = r.column_int(3);
    room.is_public = r.column_bool(4);
    return room;
}

// stream_ordering, event_id, room_id, depth, type, state_key (NULL: not state), sender,
// origin_server_ts, json, redacted_by (NULL: not redacted)
template <typename Row>
EventRecord read_event(const Row& r) {
    EventRecord e;
    e.stream_ordering = r.column_int(0);
    e.event_id = r.column_text(1);
    e.room_id = r.column_text(2);
    e.depth = r.column_int(3);
    e.type = r.column_text(4);
    if (!r.column_is_null(5)) e.state_key = r.column_text(5);
    e.sender = r.column_text(6);
    e.origin_server_ts = r.column_int(7);
    e.json = r.column_text(8);
    e.redacted_by = r.column_text(9);
    return e;
}

// room_id, user_id, membership, event_id, stream_ordering, forgotten
template <typename Row>
MembershipRecord read_membership(const Row& r) {
    MembershipRecord m;
    m.room_id = r.column_text(0);
    m.user_id = r.column_text(1);
    m.membership = r.column_text(2);
    m.event_id = r.column_text(3);
    m.stream_ordering = r.column_int(4);
    m.forgotten = r.column_bool(5);
    return m;
}

// alias, room_id, creator, created_ts
template <typename Row>
RoomAliasRecord read_room_alias(const Row& r) {
    RoomAliasRecord a;
    a.alias = r.column_text(0);
    a.room_id = r.column_text(1);
    a.creator = r.column_text(2);
    a.created_ts = r.column_int(3);
    return a;
}

}  // namespace myelin::storage::rows
