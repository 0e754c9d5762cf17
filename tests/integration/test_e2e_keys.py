"""Black-box tests of the end-to-end key endpoints clients call at start-up (keys.yaml,
to_device.yaml), which store and relay only: POST /keys/upload (device keys of the caller's own
device, one-time and fallback keys, counts), POST /keys/query (local users, display names,
remote servers under failures), POST /keys/claim (each one-time key once, then the fallback
key), GET /keys/changes (empty until /sync exists), PUT /sendToDevice (idempotent per txnId);
deleting a device removes its keys."""

from __future__ import annotations

import concurrent.futures

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
KEYS = "keys.yaml"
ALG = "signed_curve25519"


def device_keys(s) -> dict:
    return {"user_id": s.user_id, "device_id": s.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{s.device_id}": "curve" + s.device_id,
                     f"ed25519:{s.device_id}": "ed" + s.device_id},
            "signatures": {s.user_id: {f"ed25519:{s.device_id}": "sig"}}}


def otk(n: int) -> dict:
    return {"key": f"key{n}", "signatures": {"@x:localhost": {"ed25519:X": "sig"}}}


def upload(server, s, body: dict, prefix: str = V3) -> dict:
    r = server.post(prefix + "/keys/upload", headers=bearer(s.access_token), json=body)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), KEYS, prefix + "/keys/upload", "post", 200)
    return r.json()["one_time_key_counts"]


def claim(server, s, wanted: dict) -> dict:
    r = server.post(V3 + "/keys/claim", headers=bearer(s.access_token),
                    json={"one_time_keys": wanted})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), KEYS, V3 + "/keys/claim", "post", 200)
    return r.json()


@prefixes
def test_upload_query_claim(shared_server, prefix):
    alice = register_ok(shared_server, unique_name("keys"), display_name="Alice's laptop")
    bob = register_ok(shared_server, unique_name("keys"))
    assert upload(shared_server, alice, {}, prefix) == {}
    counts = upload(shared_server, alice, {
        "device_keys": device_keys(alice),
        "one_time_keys": {f"{ALG}:AAAA{n}": otk(n) for n in range(3)} | {"curve25519:C": "plain"},
        "fallback_keys": {f"{ALG}:FB": otk(99) | {"fallback": True}}}, prefix)
    assert counts == {ALG: 3, "curve25519": 1}
    # A retried upload of the same keys changes nothing.
    assert upload(shared_server, alice, {"one_time_keys": {f"{ALG}:AAAA0": otk(0)}},
                  prefix) == {ALG: 3, "curve25519": 1}

    r = shared_server.post(prefix + "/keys/query", headers=bearer(bob.access_token),
                           json={"device_keys": {alice.user_id: [], bob.user_id: [],
                                                 "@carol:elsewhere.example": []},
                                 "timeout": 10000})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), KEYS, prefix + "/keys/query", "post", 200)
    body = r.json()
    got = body["device_keys"][alice.user_id][alice.device_id]
    expected = device_keys(alice) | {"unsigned": {"device_display_name": "Alice's laptop"}}
    assert got == expected
    assert body["device_keys"][bob.user_id] == {}
    assert "elsewhere.example" in body["failures"]
    assert "@carol:elsewhere.example" not in body["device_keys"]
    r = shared_server.post(prefix + "/keys/query", headers=bearer(bob.access_token),
                           json={"device_keys": {alice.user_id: ["NOSUCH"]}})
    assert r.json()["device_keys"] == {alice.user_id: {}}

    out = claim(shared_server, bob, {alice.user_id: {alice.device_id: ALG}})
    keys = out["one_time_keys"][alice.user_id][alice.device_id]
    assert keys == {f"{ALG}:AAAA0": otk(0)}
    claimed = [f"{ALG}:AAAA0"]
    for _ in range(2):
        out = claim(shared_server, bob, {alice.user_id: {alice.device_id: ALG}})
        claimed += list(out["one_time_keys"][alice.user_id][alice.device_id])
    assert claimed == [f"{ALG}:AAAA{n}" for n in range(3)]
    assert upload(shared_server, alice, {}) == {"curve25519": 1}
    # No one-time key left: the fallback key, as often as asked.
    for _ in range(2):
        out = claim(shared_server, bob, {alice.user_id: {alice.device_id: ALG}})
        assert out["one_time_keys"][alice.user_id][alice.device_id] == {
            f"{ALG}:FB": otk(99) | {"fallback": True}}
    out = claim(shared_server, bob, {alice.user_id: {"NOSUCH": ALG},
                                     "@carol:elsewhere.example": {"D": ALG}})
    assert out["one_time_keys"] == {}
    assert "elsewhere.example" in out["failures"]


def test_concurrent_claims_never_share_a_key(shared_server):
    alice = register_ok(shared_server, unique_name("keys"))
    bob = register_ok(shared_server, unique_name("keys"))
    upload(shared_server, alice, {"one_time_keys": {f"{ALG}:K{n:02}": otk(n) for n in range(20)}})

    def one(_):
        return claim(shared_server, bob, {alice.user_id: {alice.device_id: ALG}})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    got = [k for r in results for k in r["one_time_keys"].get(alice.user_id, {}).get(
        alice.device_id, {})]
    assert len(got) == 20 and len(set(got)) == 20


def test_upload_errors(shared_server):
    alice = register_ok(shared_server, unique_name("keys"))
    bob = register_ok(shared_server, unique_name("keys"))
    h = bearer(alice.access_token)
    wrong_user = device_keys(alice) | {"user_id": bob.user_id}
    wrong_device = device_keys(alice) | {"device_id": "OTHER"}
    for body in ({"device_keys": wrong_user}, {"device_keys": wrong_device},
                 {"device_keys": device_keys(alice) | {"keys": {"a:b": 1}}},
                 {"device_keys": {"user_id": alice.user_id}},
                 {"device_keys": []},
                 {"one_time_keys": {"noalgorithm": "k"}},
                 {"one_time_keys": {f"{ALG}:A": 5}},
                 {"one_time_keys": []},
                 {"fallback_keys": {f"{ALG}:A": otk(1), f"{ALG}:B": otk(2)}}):
        assert_matrix_error(shared_server.post(V3 + "/keys/upload", headers=h, json=body), 400,
                            "M_BAD_JSON")
    r = shared_server.post(V3 + "/keys/query", headers=bearer(bob.access_token),
                           json={"device_keys": {alice.user_id: []}})
    assert r.json()["device_keys"] == {alice.user_id: {}}  # nothing was stored
    assert_matrix_error(shared_server.post(V3 + "/keys/query", headers=h, json={}), 400,
                        "M_MISSING_PARAM")
    assert_matrix_error(shared_server.post(V3 + "/keys/query", headers=h,
                                           json={"device_keys": {alice.user_id: "x"}}), 400,
                        "M_BAD_JSON")
    assert_matrix_error(shared_server.post(V3 + "/keys/claim", headers=h, json={}), 400,
                        "M_MISSING_PARAM")
    assert_matrix_error(shared_server.post(V3 + "/keys/claim", headers=h,
                                           json={"one_time_keys": {alice.user_id: {"D": 1}}}),
                        400, "M_BAD_JSON")
    assert_matrix_error(shared_server.post(V3 + "/keys/upload", json={}), 401, "M_MISSING_TOKEN")


def test_keys_changes_is_empty_until_sync_exists(shared_server):
    s = register_ok(shared_server, unique_name("keys"))
    r = shared_server.get(V3 + "/keys/changes", headers=bearer(s.access_token),
                          params={"from": "s1", "to": "s2"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), KEYS, V3 + "/keys/changes", "get", 200)
    assert r.json() == {"changed": [], "left": []}
    assert_matrix_error(shared_server.get(V3 + "/keys/changes", headers=bearer(s.access_token)),
                        400, "M_MISSING_PARAM")


def test_deleting_a_device_removes_its_keys(shared_server):
    alice = register_ok(shared_server, unique_name("keys"))
    bob = register_ok(shared_server, unique_name("keys"))
    upload(shared_server, alice, {"device_keys": device_keys(alice),
                                  "one_time_keys": {f"{ALG}:A": otk(1)}})
    r = shared_server.post(V3 + "/logout", headers=bearer(alice.access_token))
    assert r.status_code == 200, show(r)
    r = shared_server.post(V3 + "/keys/query", headers=bearer(bob.access_token),
                           json={"device_keys": {alice.user_id: []}})
    assert r.json()["device_keys"] == {alice.user_id: {}}
    out = claim(shared_server, bob, {alice.user_id: {alice.device_id: ALG}})
    assert out["one_time_keys"] == {}


@prefixes
def test_send_to_device(shared_server, prefix):
    alice = register_ok(shared_server, unique_name("td"))
    bob = register_ok(shared_server, unique_name("td"))
    path = f"{prefix}/sendToDevice/m.room_key_request/txn1"
    body = {"messages": {bob.user_id: {bob.device_id: {"action": "request"}, "*": {"x": 1},
                                       "NOSUCH": {"y": 2}},
                         "@carol:elsewhere.example": {"D": {"z": 3}}}}
    r = shared_server.put(path, headers=bearer(alice.access_token), json=body)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), "to_device.yaml", path, "put", 200)
    assert r.json() == {}
    # The same txnId again: 200, queued once (checked in the storage tests; /sync delivers).
    assert shared_server.put(path, headers=bearer(alice.access_token),
                             json=body).status_code == 200
    h = bearer(alice.access_token)
    for bad in ({}, {"messages": []}, {"messages": {bob.user_id: []}},
                {"messages": {bob.user_id: {"D": "text"}}}, {"messages": {"notauser": {}}}):
        r = shared_server.put(f"{V3}/sendToDevice/m.x/bad", headers=h, json=bad)
        assert r.status_code == 400, show(r)
    assert_matrix_error(shared_server.put(f"{V3}/sendToDevice/m.x/{'t' * 256}", headers=h,
                                          json={"messages": {}}), 400, "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(path, json=body), 401, "M_MISSING_TOKEN")


@prefixes
def test_honestly_empty_answers(shared_server, prefix):
    s = register_ok(shared_server, unique_name("empty"))
    h = bearer(s.access_token)
    r = shared_server.get(prefix + "/joined_rooms", headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), "list_joined_rooms.yaml", prefix + "/joined_rooms", "get", 200)
    assert r.json() == {"joined_rooms": []}
    r = shared_server.get(prefix + "/thirdparty/protocols", headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), "third_party_lookup.yaml", prefix + "/thirdparty/protocols",
                        "get", 200)
    assert r.json() == {}
    # No TURN server: Synapse's {} (a deviation from the 200 schema, which wants uris etc.;
    # js-sdk builds no ICE server from it, while uris: [] would give it an empty one).
    r = shared_server.get(prefix + "/voip/turnServer", headers=h)
    assert r.status_code == 200, show(r)
    assert r.json() == {}
    for p in ("/joined_rooms", "/thirdparty/protocols", "/voip/turnServer"):
        assert_matrix_error(shared_server.get(prefix + p), 401, "M_MISSING_TOKEN")
