#pragma once

// Turning a result row into a record, shared by every SQL backend. Each backend's SELECT lists
// spell out their columns in the order given here, and its row type offers column_int(i),
// column_bool(i), column_text(i), column_is_null(i), column_blob(i) and column_token_hash(i)
// (columns from 0; NULL text reads as "", NULL bytes as empty).
//
// Thread-safety: pure functions of the row.

#include <cstdint>
#include <utility>

#include "myelin/core/error.hpp"
#include "myelin/storage/records.hpp"
#include "myelin/storage/stage_lists.hpp"

namespace myelin::storage::rows {

// user_id, password_hash, is_guest, is_admin, deactivated, created_ts
template <typename Row>
UserRecord read_user(const Row& s) {
    UserRecord user;
    user.user_id = s.column_text(0);
    user.password_hash = s.column_text(1);
    user.is_guest = s.column_bool(2);
    user.is_admin = s.column_bool(3);
    user.deactivated = s.column_bool(4);
    user.created_ts = s.column_int(5);
    return user;
}

// user_id, device_id, display_name (NULL: none), created_ts, last_seen_ts, last_seen_ip
template <typename Row>
DeviceRecord read_device(const Row& s) {
    DeviceRecord device;
    device.user_id = s.column_text(0);
    device.device_id = s.column_text(1);
    if (!s.column_is_null(2)) device.display_name = s.column_text(2);
    device.created_ts = s.column_int(3);
    device.last_seen_ts = s.column_int(4);
    device.last_seen_ip = s.column_text(5);
    return device;
}

// The 11 session columns starting at `first`: session_id, user_id, device_id, refreshable,
// is_guest, created_ts, ends_ts, current_generation, used_generation, revoked_ts, revoked_reason.
template <typename Row>
SessionRecord read_session(const Row& s, int first) {
    SessionRecord session;
    session.session_id = s.column_int(first);
    session.user_id = s.column_text(first + 1);
    session.device_id = s.column_text(first + 2);
    session.refreshable = s.column_bool(first + 3);
    session.is_guest = s.column_bool(first + 4);
    session.created_ts = s.column_int(first + 5);
    session.ends_ts = s.column_int(first + 6);
    session.current_generation = s.column_int(first + 7);
    session.used_generation = s.column_int(first + 8);
    session.revoked_ts = s.column_int(first + 9);
    session.revoked_reason = static_cast<RevokeReason>(s.column_int(first + 10));
    return session;
}

// The first five columns of a token row: token_hash, session_id, generation, issued_ts,
// expires_ts, into an AccessTokenRecord or RefreshTokenRecord. Error (500) if the stored hash is
// not 32 bytes.
template <typename Row, typename Token>
Result<void> read_token_columns(const Row& s, Token& token) {
    auto hash = s.column_token_hash(0);
    if (!hash) return hash.error();
    token.token_hash = *hash;
    token.session_id = s.column_int(1);
    token.generation = s.column_int(2);
    token.issued_ts = s.column_int(3);
    token.expires_ts = s.column_int(4);
    return {};
}

// The five token columns, then the 11 session columns. Error (500) for a malformed hash.
template <typename Row>
Result<AccessTokenLookup> read_access_token(const Row& s) {
    AccessTokenLookup lookup;
    if (auto read = read_token_columns(s, lookup.token); !read) return read.error();
    lookup.session = read_session(s, 5);
    return lookup;
}

// The five token columns, sealed_successor (NULL: none), then the 11 session columns. Error
// (500) for a malformed hash.
template <typename Row>
Result<RefreshTokenLookup> read_refresh_token(const Row& s) {
    RefreshTokenLookup lookup;
    if (auto read = read_token_columns(s, lookup.token); !read) return read.error();
    lookup.token.sealed_successor = s.column_blob(5);
    lookup.session = read_session(s, 6);
    return lookup;
}

// id, user_id, device_id, ts, kind, detail
template <typename Row>
SecurityEventRecord read_security_event(const Row& s) {
    SecurityEventRecord event;
    event.id = s.column_int(0);
    event.user_id = s.column_text(1);
    event.device_id = s.column_text(2);
    event.ts = s.column_int(3);
    event.kind = s.column_text(4);
    event.detail = s.column_text(5);
    return event;
}

// token, uses_allowed (NULL: unlimited), pending, completed, expiry_ts, created_ts
template <typename Row>
RegistrationTokenRecord read_registration_token(const Row& s) {
    RegistrationTokenRecord token;
    token.token = s.column_text(0);
    if (!s.column_is_null(1)) token.uses_allowed = s.column_int(1);
    token.pending = s.column_int(2);
    token.completed = s.column_int(3);
    token.expiry_ts = s.column_int(4);
    token.created_ts = s.column_int(5);
    return token;
}

// id, session_id, user_id, device_id, reason, ts
template <typename Row>
RevocationRecord read_revocation(const Row& s) {
    RevocationRecord revocation;
    revocation.id = s.column_int(0);
    revocation.session_id = s.column_int(1);
    revocation.user_id = s.column_text(2);
    revocation.device_id = s.column_text(3);
    revocation.reason = static_cast<RevokeReason>(s.column_int(4));
    revocation.ts = s.column_int(5);
    return revocation;
}

// session_id, endpoint, user_id, flows (stage_lists.hpp), registration, created_ts, completed
// (stage_lists.hpp), registration_token (NULL: none), finished. Error (500) for malformed stage
// lists.
template <typename Row>
Result<UiaSessionRecord> read_uia_session(const Row& s) {
    UiaSessionRecord session;
    session.session_id = s.column_text(0);
    session.endpoint = s.column_text(1);
    session.user_id = s.column_text(2);
    auto flows = decode_flows(s.column_text(3));
    if (!flows) return flows.error();
    session.flows = std::move(*flows);
    session.registration = s.column_bool(4);
    session.created_ts = s.column_int(5);
    auto completed = decode_stages(s.column_text(6));
    if (!completed) return completed.error();
    session.completed = std::move(*completed);
    if (!s.column_is_null(7)) session.registration_token = s.column_text(7);
    session.finished = s.column_bool(8);
    return session;
}

}  // namespace myelin::storage::rows
