"""Black-box tests of rooms and events (issue #8 §2): createRoom (presets, initial_state, name,
topic, invite, is_direct, room versions, power level override, alias), send with transaction
IDs, state, membership (invite, join by ID and alias, leave, kick, ban, unban, forget),
redaction, /messages in both directions with tokens and filters, /event, /context, /members,
/joined_members, /joined_rooms, local aliases, /publicRooms, GET /_matrix/key/v2/server, and
the stored events themselves: content hash, ed25519 signature by the server's published key and
event ID = reference hash, recomputed here in Python (canonical JSON, SHA-256, redaction
algorithm of v10/v11 for the reference hash).

Response bodies are validated against the spec's schemas; errors against the error shape."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import myelin_harness as h
from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import V3, R0, register_ok, show
from room_client import RoomClient, q


# ------------------------------------------------------------------------------ helpers

class Client(RoomClient):
    def create(self, **body):
        r = self.req("POST", "/createRoom", json=body)
        assert r.status_code == 200, show(r)
        assert_matches_spec(r, "create_room.yaml", V3 + "/createRoom", "post", 200)
        return r.json()["room_id"]

    def messages(self, room, **params):
        r = self.req("GET", f"/rooms/{q(room)}/messages", params=params)
        assert r.status_code == 200, show(r)
        assert_matches_spec(r, "message_pagination.yaml", f"/rooms/{room}/messages", "get", 200)
        return r.json()


def new_client(server, name=None) -> Client:
    return Client(server, register_ok(server, name))


@pytest.fixture(scope="module")
def hs(tmp_path_factory, myelin_binary):
    s = h.start_server(tmp_path_factory.mktemp("rooms"), scope="module")
    yield s
    h.stop_servers([s], check=True)


# ------------------------------------------------------------------------------ event checks

def canonical(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def b64(data: bytes, urlsafe=False) -> str:
    enc = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return enc(data).decode().rstrip("=")


def unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


KEEP_TOP = {"10": {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
                   "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin",
                   "origin_server_ts", "membership"},
            "11": {"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
                   "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"}}
KEEP_CONTENT = {
    "10": {"m.room.member": {"membership", "join_authorised_via_users_server"},
           "m.room.create": {"creator"},
           "m.room.join_rules": {"join_rule", "allow"},
           "m.room.power_levels": {"ban", "events", "events_default", "kick", "redact",
                                   "state_default", "users", "users_default"},
           "m.room.history_visibility": {"history_visibility"}},
    "11": {"m.room.member": {"membership", "join_authorised_via_users_server",
                             "third_party_invite"},
           "m.room.create": None,  # all kept
           "m.room.join_rules": {"join_rule", "allow"},
           "m.room.power_levels": {"ban", "events", "events_default", "invite", "kick",
                                   "redact", "state_default", "users", "users_default"},
           "m.room.history_visibility": {"history_visibility"},
           "m.room.redaction": {"redacts"}},
}


def redact(event: dict, version: str) -> dict:
    out = {k: v for k, v in event.items() if k in KEEP_TOP[version]}
    keep = KEEP_CONTENT[version].get(event["type"], set())
    content = event.get("content", {})
    if keep is not None:
        content = {k: v for k, v in content.items() if k in keep}
        if version == "11" and event["type"] == "m.room.member" and "third_party_invite" in content:
            content["third_party_invite"] = {
                k: v for k, v in content["third_party_invite"].items() if k == "signed"}
    out["content"] = content
    return out


def verify_event(event_id: str, pdu: dict, version: str, server_name: str, keys: dict,
                 redacted: bool = False):
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    content_hash = b64(hashlib.sha256(canonical(stripped)).digest())
    if redacted:
        assert pdu["hashes"]["sha256"] != content_hash or not pdu.get("content")
    else:
        assert pdu["hashes"]["sha256"] == content_hash, f"content hash of {event_id}"
    red = redact(pdu, version)
    for_ref = {k: v for k, v in red.items() if k not in ("signatures", "unsigned", "age_ts")}
    assert "$" + b64(hashlib.sha256(canonical(for_ref)).digest(), urlsafe=True) == event_id
    signed = {k: v for k, v in red.items() if k not in ("signatures", "unsigned")}
    sigs = pdu["signatures"][server_name]
    assert sigs, "no signature"
    for key_id, sig in sigs.items():
        Ed25519PublicKey.from_public_bytes(keys[key_id]).verify(unb64(sig), canonical(signed))


def server_keys(hs) -> dict:
    r = hs.get("/_matrix/key/v2/server")
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["server_name"] == "localhost"
    return {kid: unb64(v["key"]) for kid, v in body["verify_keys"].items()}


def stored_events(hs, room_id):
    return h.db_query(hs, "SELECT event_id, json, redacted_by FROM events WHERE room_id = ? "
                          "ORDER BY stream_ordering", (room_id,))


# ------------------------------------------------------------------------------ tests

def test_server_key_is_published_and_self_signed(hs):
    r = hs.get("/_matrix/key/v2/server")
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["valid_until_ts"] > 0
    (key_id, entry), = body["verify_keys"].items()
    assert key_id.startswith("ed25519:a_")
    key = Ed25519PublicKey.from_public_bytes(unb64(entry["key"]))
    signed = {k: v for k, v in body.items() if k not in ("signatures", "unsigned")}
    key.verify(unb64(body["signatures"]["localhost"][key_id]), canonical(signed))


def test_signing_key_file_is_synapse_format_0600_and_survives_restart(server):
    import os
    import stat
    folder = server.data_dir if h.backend() == "sqlite" else server.config_path.parent
    path = folder / "myelin.signing.key"
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    algo, version, seed = path.read_text().strip().split(" ")
    assert algo == "ed25519" and version.startswith("a_") and len(unb64(seed)) == 32
    before = server_keys(server)
    assert seed not in server.log_text()
    server.restart()
    assert server_keys(server) == before
    assert path.read_text().split(" ")[2].strip() == seed


def test_create_invite_join_send_messages_state_and_verify(hs):
    alice, bob = new_client(hs), new_client(hs)
    room = alice.create(name="Chat", topic="Things", invite=[bob.user_id], is_direct=True,
                        preset="private_chat")
    # Bob is invited, not joined: he may not read or send.
    r = bob.req("GET", f"/rooms/{q(room)}/messages", params={"dir": "b"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = bob.req("PUT", f"/rooms/{q(room)}/send/m.room.message/x", json={"body": "hi"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = bob.req("POST", f"/rooms/{q(room)}/join", json={})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "joining.yaml", f"/rooms/{room}/join", "post", 200)
    assert r.json()["room_id"] == room

    sent = [alice.send(room, f"m{i}") for i in range(5)] + [bob.send(room, "from bob")]

    # Backwards from the newest, in pages of 4, until the create event.
    seen, token = [], None
    for _ in range(10):
        params = {"dir": "b", "limit": "4"}
        if token:
            params["from"] = token
        page = alice.messages(room, **params)
        seen += [e["event_id"] for e in page["chunk"]]
        if "end" not in page:
            break
        token = page["end"]
    forward = alice.messages(room, dir="f", limit="100")
    assert [e["event_id"] for e in forward["chunk"]] == list(reversed(seen))
    types = [e["type"] for e in forward["chunk"]]
    assert types[0] == "m.room.create"
    assert types.count("m.room.member") == 3  # alice join, bob invite, bob join
    assert [e["event_id"] for e in forward["chunk"] if e["type"] == "m.room.message"] == sent
    invite = next(e for e in forward["chunk"]
                  if e["type"] == "m.room.member" and e["content"]["membership"] == "invite")
    assert invite["content"].get("is_direct") is True
    assert invite["state_key"] == bob.user_id

    # Forwards in pages with from/to tokens.
    first = alice.messages(room, dir="f", limit="3")
    assert len(first["chunk"]) == 3 and "end" in first
    second = alice.messages(room, dir="f", limit="3", **{"from": first["end"]})
    assert [e["event_id"] for e in second["chunk"]] == \
        [e["event_id"] for e in forward["chunk"][3:6]]

    # Filter: only messages of bob.
    only_bob = alice.messages(room, dir="b", limit="10", filter=json.dumps(
        {"types": ["m.room.message"], "senders": [bob.user_id]}))
    assert [e["event_id"] for e in only_bob["chunk"]] == [sent[-1]]
    no_msgs = alice.messages(room, dir="b", limit="50",
                             filter=json.dumps({"not_types": ["m.room.message"]}))
    assert all(e["type"] != "m.room.message" for e in no_msgs["chunk"])

    # State.
    r = alice.req("GET", f"/rooms/{q(room)}/state")
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "rooms.yaml", f"/rooms/{room}/state", "get", 200)
    state = {(e["type"], e["state_key"]) for e in r.json()}
    assert ("m.room.name", "") in state and ("m.room.member", bob.user_id) in state
    r = alice.req("GET", f"/rooms/{q(room)}/state/m.room.name/")
    assert r.status_code == 200 and r.json() == {"name": "Chat"}, show(r)
    r = alice.req("GET", f"/rooms/{q(room)}/state/m.room.topic")
    assert r.status_code == 200 and r.json() == {"topic": "Things"}, show(r)
    r = alice.req("GET", f"/rooms/{q(room)}/state/m.room.avatar")
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = alice.req("PUT", f"/rooms/{q(room)}/state/m.room.topic", json={"topic": "New"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "room_state.yaml", f"/rooms/{room}/state/m.room.topic/k", "put", 200)
    assert alice.ok("GET", f"/rooms/{q(room)}/state/m.room.topic") == {"topic": "New"}
    # Bob (level 0) may not change the name (state_default 50 / m.room.name 50).
    r = bob.req("PUT", f"/rooms/{q(room)}/state/m.room.name", json={"name": "Mine"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")

    # One event, the context, members.
    r = bob.req("GET", f"/rooms/{q(room)}/event/{q(sent[2])}")
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "rooms.yaml", f"/rooms/{room}/event/{sent[2]}", "get", 200)
    assert r.json()["content"]["body"] == "m2"
    r = bob.req("GET", f"/rooms/{q(room)}/event/$nope")
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = alice.req("GET", f"/rooms/{q(room)}/context/{q(sent[2])}", params={"limit": "4"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "event_context.yaml", f"/rooms/{room}/context/{sent[2]}", "get", 200)
    ctx = r.json()
    assert ctx["event"]["event_id"] == sent[2]
    assert [e["event_id"] for e in ctx["events_before"]] == [sent[1], sent[0]]
    assert [e["event_id"] for e in ctx["events_after"]] == [sent[3], sent[4]]
    r = alice.req("GET", f"/rooms/{q(room)}/members")
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "rooms.yaml", f"/rooms/{room}/members", "get", 200)
    assert {e["state_key"] for e in r.json()["chunk"]} == {alice.user_id, bob.user_id}
    r = alice.req("GET", f"/rooms/{q(room)}/joined_members")
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "rooms.yaml", f"/rooms/{room}/joined_members", "get", 200)
    assert r.json()["joined"][bob.user_id]["display_name"] == bob.s.localpart
    r = bob.req("GET", "/joined_rooms")
    assert r.status_code == 200 and room in r.json()["joined_rooms"], show(r)
    assert_matches_spec(r, "list_joined_rooms.yaml", "/joined_rooms", "get", 200)

    # Every stored event verifies against the published key.
    keys = server_keys(hs)
    rows = stored_events(hs, room)
    assert len(rows) >= 12
    prev = None
    for event_id, text, redacted_by in rows:
        pdu = json.loads(text)
        assert text.encode() == canonical(pdu), "stored JSON is not canonical"
        verify_event(event_id, pdu, "10", "localhost", keys)
        if prev:
            assert pdu["prev_events"] == [prev]
        prev = event_id


def test_send_is_idempotent_per_transaction_and_device(hs):
    alice = new_client(hs)
    room = alice.create()
    a = alice.send(room, "once", txn="same")
    b = alice.send(room, "once", txn="same")
    assert a == b
    r = alice.req("PUT", f"/rooms/{q(room)}/send/m.room.message/same", prefix=R0,
                  json={"body": "once"})
    assert r.status_code == 200 and r.json()["event_id"] == a, show(r)
    other = Client(hs, h_login(hs, alice))
    assert other.send(room, "once", txn="same") != a
    bodies = [e for e in alice.messages(room, dir="b", limit="50")["chunk"]
              if e["type"] == "m.room.message"]
    assert len(bodies) == 2


def h_login(hs, client):
    from client_helpers import login_ok
    return login_ok(hs, client.user_id, client.s.password)


def test_kick_ban_unban_leave_forget(hs):
    alice, bob, carol = new_client(hs), new_client(hs), new_client(hs)
    room = alice.create(preset="public_chat")
    for c in (bob, carol):
        c.ok("POST", f"/join/{q(room)}", json={})
    # Bob may not kick (kick level 50).
    r = bob.req("POST", f"/rooms/{q(room)}/kick", json={"user_id": carol.user_id})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = alice.req("POST", f"/rooms/{q(room)}/kick", json={"user_id": carol.user_id,
                                                         "reason": "bye"})
    assert r.status_code == 200 and r.json() == {}, show(r)
    assert_matches_spec(r, "kicking.yaml", f"/rooms/{room}/kick", "post", 200)
    r = carol.req("PUT", f"/rooms/{q(room)}/send/m.room.message/t", json={"body": "x"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    carol.ok("POST", f"/rooms/{q(room)}/join", json={})  # public: may come back
    # Kicking someone not in the room is refused.
    stranger = new_client(hs)
    r = alice.req("POST", f"/rooms/{q(room)}/kick", json={"user_id": stranger.user_id})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = alice.req("POST", f"/rooms/{q(room)}/kick", json={"user_id": "not-a-user"})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")

    r = alice.req("POST", f"/rooms/{q(room)}/ban", json={"user_id": carol.user_id})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "banning.yaml", f"/rooms/{room}/ban", "post", 200)
    r = carol.req("POST", f"/rooms/{q(room)}/join", json={})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    # Carol sees history up to her ban, not after.
    after_ban = alice.send(room, "after the ban")
    r = carol.req("GET", f"/rooms/{q(room)}/event/{q(after_ban)}")
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = alice.req("POST", f"/rooms/{q(room)}/unban", json={"user_id": bob.user_id})
    assert_matrix_error(r, 403, "M_FORBIDDEN")  # bob is not banned
    r = alice.req("POST", f"/rooms/{q(room)}/unban", json={"user_id": carol.user_id})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "banning.yaml", f"/rooms/{room}/unban", "post", 200)
    carol.ok("POST", f"/rooms/{q(room)}/join", json={})

    # Forget: only after leaving.
    r = bob.req("POST", f"/rooms/{q(room)}/forget", json={})
    assert_matrix_error(r, 400)
    r = bob.req("POST", f"/rooms/{q(room)}/leave", json={})
    assert r.status_code == 200 and r.json() == {}, show(r)
    assert_matches_spec(r, "leaving.yaml", f"/rooms/{room}/leave", "post", 200)
    assert room not in bob.ok("GET", "/joined_rooms")["joined_rooms"]
    r = bob.req("POST", f"/rooms/{q(room)}/forget", json={})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "leaving.yaml", f"/rooms/{room}/forget", "post", 200)
    r = stranger.req("POST", f"/rooms/{q(room)}/forget", json={})
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    # Leaving a room one is not in.
    r = stranger.req("POST", f"/rooms/{q(room)}/leave", json={})
    assert_matrix_error(r, 403, "M_FORBIDDEN")


def test_redaction(hs):
    alice, bob = new_client(hs), new_client(hs)
    room = alice.create(preset="public_chat", room_version="11")
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    msg = bob.send(room, "regret")
    r = alice.req("PUT", f"/rooms/{q(room)}/redact/{q(msg)}/r1", json={"reason": "spam"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "redaction.yaml", f"/rooms/{room}/redact/{msg}/r1", "put", 200)
    red = r.json()["event_id"]
    again = alice.req("PUT", f"/rooms/{q(room)}/redact/{q(msg)}/r1", json={"reason": "spam"})
    assert again.json()["event_id"] == red
    ev = bob.ok("GET", f"/rooms/{q(room)}/event/{q(msg)}")
    assert ev["content"] == {}
    assert ev["unsigned"]["redacted_because"]["event_id"] == red
    red_ev = bob.ok("GET", f"/rooms/{q(room)}/event/{q(red)}")
    assert red_ev["content"]["redacts"] == msg and red_ev["redacts"] == msg
    # Bob may not redact Alice's event (redact level 50).
    mine = alice.send(room, "keep")
    r = bob.req("PUT", f"/rooms/{q(room)}/redact/{q(mine)}/r2", json={})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = alice.req("PUT", f"/rooms/{q(room)}/redact/$unknown/r3", json={})
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    # The stored, redacted event still verifies (signature and ID; not the content hash).
    keys = server_keys(hs)
    for event_id, text, redacted_by in stored_events(hs, room):
        verify_event(event_id, json.loads(text), "11", "localhost", keys,
                     redacted=bool(redacted_by))
        if event_id == msg:
            assert redacted_by == red


def test_create_room_options_and_errors(hs):
    alice, bob = new_client(hs), new_client(hs)
    r = alice.req("POST", "/createRoom", json={"room_version": "9"})
    assert_matrix_error(r, 400, "M_UNSUPPORTED_ROOM_VERSION")
    assert_matches_spec(r, "create_room.yaml", V3 + "/createRoom", "post", 400)
    r = alice.req("POST", "/createRoom", json={"invite": ["nope"]})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    r = alice.req("POST", "/createRoom", json={"preset": "party"})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    r = alice.req("POST", "/createRoom", data="{")
    assert_matrix_error(r, 400, "M_NOT_JSON")
    r = alice.req("POST", "/createRoom", json={"name": 5})
    assert_matrix_error(r, 400, "M_BAD_JSON")
    r = alice.req("POST", "/createRoom", json={"creation_content": {"x": 1.5}})
    assert_matrix_error(r, 400, "M_BAD_JSON")

    room = alice.create(room_version="11", preset="trusted_private_chat",
                        invite=[bob.user_id], room_alias_name="opts",
                        initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                        "content": {"join_rule": "public"}},
                                       {"type": "org.example.x", "content": {"a": 1}}],
                        power_level_content_override={"events_default": 10})
    create = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.create")
    assert create["room_version"] == "11" and "creator" not in create
    pl = alice.ok("GET", f"/rooms/{q(room)}/state/m.room.power_levels")
    assert pl["events_default"] == 10
    assert pl["users"][bob.user_id] == 100 and pl["users"][alice.user_id] == 100
    assert alice.ok("GET", f"/rooms/{q(room)}/state/m.room.join_rules")["join_rule"] == "public"
    assert alice.ok("GET", f"/rooms/{q(room)}/state/org.example.x")["a"] == 1
    assert alice.ok("GET", f"/rooms/{q(room)}/state/m.room.canonical_alias")["alias"] == \
        "#opts:localhost"
    r = alice.req("POST", "/createRoom", json={"room_alias_name": "opts"})
    assert_matrix_error(r, 400, "M_ROOM_IN_USE")
    # An initial event the rules refuse (a create event again) invalidates the request.
    r = alice.req("POST", "/createRoom", json={"initial_state": [
        {"type": "m.room.create", "state_key": "", "content": {}}]})
    assert_matrix_error(r, 400, "M_INVALID_ROOM_STATE")
    # Oversized event: 413 M_TOO_LARGE.
    r = alice.req("PUT", f"/rooms/{q(room)}/send/m.room.message/big",
                  json={"body": "x" * 65000})
    assert_matrix_error(r, 413, "M_TOO_LARGE")


def test_aliases_join_by_alias_and_public_rooms(hs):
    alice, bob = new_client(hs), new_client(hs)
    room = alice.create(preset="public_chat", visibility="public", name="Lobby",
                        topic="Welcome")
    alias = "#lobby-" + alice.s.localpart + ":localhost"
    r = alice.req("PUT", f"/directory/room/{q(alias)}", json={"room_id": room})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "directory.yaml", f"/directory/room/{alias}", "put", 200)
    r = bob.req("PUT", f"/directory/room/{q(alias)}", json={"room_id": room})
    assert_matrix_error(r, 409)
    r = alice.req("PUT", f"/directory/room/{q('#x:elsewhere')}", json={"room_id": room})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    r = alice.req("PUT", f"/directory/room/{q('#y:localhost')}", json={"room_id": "!no:localhost"})
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = bob.req("GET", f"/directory/room/{q(alias)}")
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "directory.yaml", f"/directory/room/{alias}", "get", 200)
    assert r.json() == {"room_id": room, "servers": ["localhost"]}
    r = alice.req("GET", f"/rooms/{q(room)}/aliases")
    assert r.status_code == 200 and r.json() == {"aliases": [alias]}, show(r)
    assert_matches_spec(r, "directory.yaml", f"/rooms/{room}/aliases", "get", 200)
    assert_matrix_error(new_client(hs).req("GET", f"/rooms/{q(room)}/aliases"), 403, "M_FORBIDDEN")
    r = bob.req("POST", f"/join/{q(alias)}", json={})
    assert r.status_code == 200 and r.json()["room_id"] == room, show(r)
    assert_matches_spec(r, "joining.yaml", f"/join/{alias}", "post", 200)
    r = bob.req("POST", f"/join/{q('#missing:localhost')}", json={})
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = bob.req("DELETE", f"/directory/room/{q(alias)}")
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = alice.req("DELETE", f"/directory/room/{q(alias)}")
    assert r.status_code == 200, show(r)
    r = bob.req("GET", f"/directory/room/{q(alias)}")
    assert_matrix_error(r, 404, "M_NOT_FOUND")

    r = hs.get(V3 + "/publicRooms", params={"limit": "500"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "list_public_rooms.yaml", "/publicRooms", "get", 200)
    entry = next(e for e in r.json()["chunk"] if e["room_id"] == room)
    assert entry["name"] == "Lobby" and entry["topic"] == "Welcome"
    assert entry["num_joined_members"] == 2 and entry["join_rule"] == "public"
    private = alice.create()
    assert all(e["room_id"] != private for e in hs.get(V3 + "/publicRooms").json()["chunk"])
    r = alice.req("POST", "/publicRooms", json={"limit": 500})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "list_public_rooms.yaml", "/publicRooms", "post", 200)
    assert any(e["room_id"] == room for e in r.json()["chunk"])

    # The directory listing: read by anyone, changed by members at the canonical alias level.
    r = hs.get(V3 + f"/directory/list/room/{q(private)}")
    assert r.status_code == 200 and r.json() == {"visibility": "private"}, show(r)
    assert_matches_spec(r, "list_public_rooms.yaml", f"/directory/list/room/{private}", "get",
                        200)
    r = bob.req("PUT", f"/directory/list/room/{q(room)}", json={"visibility": "private"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = alice.req("PUT", f"/directory/list/room/{q(private)}", json={"visibility": "public"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "list_public_rooms.yaml", f"/directory/list/room/{private}", "put",
                        200)
    assert any(e["room_id"] == private
               for e in hs.get(V3 + "/publicRooms", params={"limit": "500"}).json()["chunk"])
    r = hs.get(V3 + "/directory/list/room/" + q("!none:localhost"))
    assert_matrix_error(r, 404, "M_NOT_FOUND")

    # Pagination of the directory with next_batch.
    page = hs.get(V3 + "/publicRooms", params={"limit": "1"}).json()
    assert len(page["chunk"]) == 1 and "next_batch" in page
    page2 = hs.get(V3 + "/publicRooms", params={"limit": "1", "since": page["next_batch"]}).json()
    assert page2["chunk"][0]["room_id"] > page["chunk"][0]["room_id"]


def test_outsiders_get_403_and_unknown_rooms_look_the_same(hs):
    alice, eve = new_client(hs), new_client(hs)
    room = alice.create(name="secret")
    for path in (f"/rooms/{q(room)}/state", f"/rooms/{q(room)}/members",
                 f"/rooms/{q(room)}/joined_members", f"/rooms/{q(room)}/state/m.room.name",
                 "/rooms/" + q("!unknown:localhost") + "/state"):
        assert_matrix_error(eve.req("GET", path), 403, "M_FORBIDDEN")
    r = eve.req("GET", f"/rooms/{q(room)}/messages", params={"dir": "b"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = alice.req("GET", f"/rooms/{q(room)}/messages", params={"dir": "x"})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    r = alice.req("GET", f"/rooms/{q(room)}/messages", params={"dir": "b", "from": "zzz"})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    r = eve.req("POST", f"/rooms/{q(room)}/join", json={})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = eve.req("POST", "/rooms/" + q("!unknown:localhost") + "/join", json={})
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = hs.get(V3 + f"/rooms/{q(room)}/state")
    assert_matrix_error(r, 401, "M_MISSING_TOKEN")
