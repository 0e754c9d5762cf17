"""Black-box tests of cross-signing (cross_signing.yaml, keys.yaml; issue #8 §1), with real
ed25519 keys made here: POST /keys/device_signing/upload (shapes, self-signing and user-signing
keys must be signed by the master key, the first upload and a repeat need no UIA, replacing the
master key needs m.login.password UIA), POST /keys/signatures/upload (a device signed by the
self-signing key, the master key signed by a device, another user's master key signed by the
user-signing key; bad signatures and unknown keys under `failures`), POST /keys/query
(master_keys, self_signing_keys, user_signing_keys only for the caller, signatures merged), and
device_lists.changed in a room-mate's /sync after a cross-signing change. Every 200 body is
validated against the spec's schemas."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import V3, bearer, register_ok, show, unique_name

XS = "cross_signing.yaml"
KEYS = "keys.yaml"
UNSTABLE = "/_matrix/client/unstable"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def canonical(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class Key:
    """An ed25519 key pair; `pub` is its unpadded Base64 public key."""

    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        self.pub = b64(self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, obj: dict, user_id: str, key_name: str | None = None) -> dict:
        """Adds this key's signature of `obj` under signatures[user_id]['ed25519:<name>']."""
        signed = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
        sig = b64(self.private.sign(canonical(signed)))
        out = json.loads(json.dumps(obj))
        out.setdefault("signatures", {}).setdefault(user_id, {})[
            f"ed25519:{key_name or self.pub}"] = sig
        return out


def xs_key(user_id: str, usage: str, key: Key) -> dict:
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{key.pub}": key.pub}}


class Identity:
    """A user with a device holding a real ed25519 device key, and cross-signing keys."""

    def __init__(self, server):
        self.server = server
        self.s = register_ok(server, unique_name("xs"))
        self.user_id = self.s.user_id
        self.h = bearer(self.s.access_token)
        self.device = Key()
        self.master, self.self_signing, self.user_signing = Key(), Key(), Key()

    def post(self, path, body, prefix=V3):
        return self.server.post(prefix + path, headers=self.h, json=body)

    def device_keys(self) -> dict:
        d = self.s.device_id
        keys = {"user_id": self.user_id, "device_id": d,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {f"curve25519:{d}": b64(b"c" * 32), f"ed25519:{d}": self.device.pub}}
        return self.device.sign(keys, self.user_id, d)

    def upload_device_keys(self):
        r = self.post("/keys/upload", {"device_keys": self.device_keys()})
        assert r.status_code == 200, show(r)

    def signing_keys(self) -> dict:
        master = xs_key(self.user_id, "master", self.master)
        ssk = self.master.sign(xs_key(self.user_id, "self_signing", self.self_signing),
                               self.user_id)
        usk = self.master.sign(xs_key(self.user_id, "user_signing", self.user_signing),
                               self.user_id)
        return {"master_key": master, "self_signing_key": ssk, "user_signing_key": usk}

    def upload_signing_keys(self, prefix=V3):
        r = self.post("/keys/device_signing/upload", self.signing_keys(), prefix)
        assert r.status_code == 200, show(r)
        assert r.json() == {}

    def query(self, *users) -> dict:
        r = self.post("/keys/query", {"device_keys": {u: [] for u in users}})
        assert r.status_code == 200, show(r)
        assert_matches_spec(r.json(), KEYS, V3 + "/keys/query", "post", 200)
        return r.json()

    def upload_signatures(self, body: dict) -> dict:
        r = self.post("/keys/signatures/upload", body)
        assert r.status_code == 200, show(r)
        assert_matches_spec(r.json(), XS, V3 + "/keys/signatures/upload", "post", 200)
        return r.json()["failures"]


@pytest.fixture
def alice(shared_server):
    return Identity(shared_server)


@pytest.fixture
def bob(shared_server):
    return Identity(shared_server)


def test_upload_and_query_cross_signing_keys(alice, bob):
    alice.upload_device_keys()
    alice.upload_signing_keys()
    keys = alice.signing_keys()

    own = alice.query(alice.user_id)
    assert own["master_keys"] == {alice.user_id: keys["master_key"]}
    assert own["self_signing_keys"] == {alice.user_id: keys["self_signing_key"]}
    assert own["user_signing_keys"] == {alice.user_id: keys["user_signing_key"]}

    # Others see the master and self-signing keys, never the user-signing key.
    theirs = bob.query(alice.user_id, bob.user_id)
    assert theirs["master_keys"] == {alice.user_id: keys["master_key"]}
    assert theirs["self_signing_keys"] == {alice.user_id: keys["self_signing_key"]}
    assert theirs["user_signing_keys"] == {}


def test_unstable_path_used_by_legacy_js_sdk_crypto(alice):
    alice.upload_signing_keys(prefix=UNSTABLE)
    assert alice.user_id in alice.query(alice.user_id)["master_keys"]


def test_shapes_and_signatures_are_checked(alice):
    keys = alice.signing_keys()
    # A self-signing key not signed by the master key.
    forged = Key().sign(xs_key(alice.user_id, "self_signing", alice.self_signing), alice.user_id,
                        alice.master.pub)
    r = alice.post("/keys/device_signing/upload", keys | {"self_signing_key": forged})
    assert_matrix_error(r, 400, "M_INVALID_SIGNATURE")
    # A user-signing key changed after it was signed.
    tampered = json.loads(json.dumps(keys["user_signing_key"]))
    tampered["usage"] = ["user_signing", "extra"]
    r = alice.post("/keys/device_signing/upload", keys | {"user_signing_key": tampered})
    assert_matrix_error(r, 400, "M_INVALID_SIGNATURE")
    # No master key sent, none stored.
    r = alice.post("/keys/device_signing/upload", {"self_signing_key": keys["self_signing_key"]})
    assert_matrix_error(r, 400, "M_MISSING_PARAM")
    # Another user's key, a wrong usage, two keys, a key that is not 32 bytes.
    other = xs_key("@someone:localhost", "master", alice.master)
    assert_matrix_error(alice.post("/keys/device_signing/upload", {"master_key": other}), 400,
                        "M_INVALID_PARAM")
    wrong_usage = xs_key(alice.user_id, "self_signing", alice.master)
    assert_matrix_error(alice.post("/keys/device_signing/upload", {"master_key": wrong_usage}),
                        400, "M_BAD_JSON")
    two = xs_key(alice.user_id, "master", alice.master)
    two["keys"][f"ed25519:{Key().pub}"] = "x"
    assert_matrix_error(alice.post("/keys/device_signing/upload", {"master_key": two}), 400,
                        "M_BAD_JSON")
    short = {"user_id": alice.user_id, "usage": ["master"], "keys": {"ed25519:AAAA": "AAAA"}}
    assert_matrix_error(alice.post("/keys/device_signing/upload", {"master_key": short}), 400,
                        "M_BAD_JSON")
    # Nothing was stored by the refused uploads.
    assert alice.query(alice.user_id)["master_keys"] == {}


def test_first_upload_and_repeat_need_no_uia_but_replacement_does(alice):
    alice.upload_signing_keys()
    alice.upload_signing_keys()  # the same keys again (a retry): no UIA
    old_master = alice.master.pub

    alice.master, alice.self_signing = Key(), Key()
    new_keys = alice.signing_keys()
    r = alice.post("/keys/device_signing/upload", new_keys)
    assert r.status_code == 401, show(r)
    body = r.json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    session = body["session"]
    assert alice.query(alice.user_id)["master_keys"][alice.user_id]["keys"] == {
        f"ed25519:{old_master}": old_master}

    wrong = {"type": "m.login.password", "session": session, "password": "not-it",
             "identifier": {"type": "m.id.user", "user": alice.user_id}}
    r = alice.post("/keys/device_signing/upload", new_keys | {"auth": wrong})
    assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN", show(r)

    auth = wrong | {"password": alice.s.password}
    r = alice.post("/keys/device_signing/upload", new_keys | {"auth": auth})
    assert r.status_code == 200, show(r)
    got = alice.query(alice.user_id)
    assert got["master_keys"][alice.user_id] == new_keys["master_key"]
    assert got["self_signing_keys"][alice.user_id] == new_keys["self_signing_key"]

    # A self-signing key alone, signed by the stored (new) master key, is a change too.
    alice.self_signing = Key()
    ssk = alice.signing_keys()["self_signing_key"]
    r = alice.post("/keys/device_signing/upload", {"self_signing_key": ssk})
    assert r.status_code == 401, show(r)


def test_key_equal_to_a_device_id_is_refused(shared_server):
    ident = Identity(shared_server)
    r = shared_server.post(V3 + "/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": ident.user_id},
        "password": ident.s.password, "device_id": ident.master.pub})
    assert r.status_code == 200, show(r)
    r = ident.post("/keys/device_signing/upload",
                   {"master_key": xs_key(ident.user_id, "master", ident.master)})
    assert_matrix_error(r, 403, "M_FORBIDDEN")


def test_signatures_upload_stores_good_signatures_and_reports_bad_ones(alice, bob):
    for who in (alice, bob):
        who.upload_device_keys()
        who.upload_signing_keys()
    d = alice.s.device_id
    master = alice.signing_keys()["master_key"]
    bob_master = bob.signing_keys()["master_key"]
    device_signed = alice.self_signing.sign(alice.device_keys(), alice.user_id)
    master_signed = alice.device.sign(master, alice.user_id, d)
    bob_signed = alice.user_signing.sign(bob_master, alice.user_id)
    failures = alice.upload_signatures({
        alice.user_id: {d: device_signed, alice.master.pub: master_signed},
        bob.user_id: {bob.master.pub: bob_signed}})
    assert failures == {}

    own = alice.query(alice.user_id, bob.user_id)
    sigs = own["device_keys"][alice.user_id][d]["signatures"][alice.user_id]
    assert sigs[f"ed25519:{alice.self_signing.pub}"] == \
        device_signed["signatures"][alice.user_id][f"ed25519:{alice.self_signing.pub}"]
    assert f"ed25519:{d}" in sigs  # the device's own signature stays
    assert own["master_keys"][alice.user_id]["signatures"][alice.user_id][f"ed25519:{d}"] == \
        master_signed["signatures"][alice.user_id][f"ed25519:{d}"]
    assert own["master_keys"][bob.user_id]["signatures"][alice.user_id] == \
        bob_signed["signatures"][alice.user_id]

    # Bob sees Alice's signatures of her own keys, and his own master key without Alice's
    # signature (a user-signing signature is only for the signer).
    theirs = bob.query(alice.user_id, bob.user_id)
    assert f"ed25519:{alice.self_signing.pub}" in \
        theirs["device_keys"][alice.user_id][d]["signatures"][alice.user_id]
    assert alice.user_id not in theirs["master_keys"][bob.user_id].get("signatures", {})


def test_signatures_upload_failures(alice, bob):
    alice.upload_device_keys()
    d = alice.s.device_id
    # Before any cross-signing key: nothing to check the device signature with.
    failures = alice.upload_signatures({
        alice.user_id: {d: alice.self_signing.sign(alice.device_keys(), alice.user_id)}})
    assert failures[alice.user_id][d]["errcode"] == "M_NOT_FOUND"

    alice.upload_signing_keys()
    bob.upload_signing_keys()
    device_keys = alice.device_keys()
    bad_sig = Key().sign(device_keys, alice.user_id, alice.self_signing.pub)
    changed = alice.self_signing.sign(device_keys | {"algorithms": ["other"]}, alice.user_id)
    bob_master = bob.signing_keys()["master_key"]
    failures = alice.upload_signatures({
        alice.user_id: {d: bad_sig, "NOSUCHDEVICE": {"user_id": alice.user_id},
                        alice.master.pub: alice.signing_keys()["master_key"]},
        bob.user_id: {"notbobskey": alice.user_signing.sign(bob_master, alice.user_id),
                      bob.master.pub: Key().sign(bob_master, alice.user_id,
                                                 alice.user_signing.pub)},
        "@carol:elsewhere.example": {"K": {}}})
    assert failures[alice.user_id][d]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[alice.user_id]["NOSUCHDEVICE"]["errcode"] == "M_NOT_FOUND"
    # The master key with no device signature in it.
    assert failures[alice.user_id][alice.master.pub]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[bob.user_id]["notbobskey"]["errcode"] == "M_NOT_FOUND"
    assert failures[bob.user_id][bob.master.pub]["errcode"] == "M_INVALID_SIGNATURE"
    assert "@carol:elsewhere.example" in failures
    # A signed object that is not the stored key.
    failures = alice.upload_signatures({alice.user_id: {d: changed}})
    assert failures[alice.user_id][d]["errcode"] == "M_INVALID_SIGNATURE"
    # None of the above was stored.
    got = alice.query(alice.user_id)
    assert set(got["device_keys"][alice.user_id][d]["signatures"][alice.user_id]) == {
        f"ed25519:{d}"}
    assert "signatures" not in got["master_keys"][alice.user_id]


def test_new_device_keys_drop_the_old_signatures(alice):
    alice.upload_device_keys()
    alice.upload_signing_keys()
    d = alice.s.device_id
    assert alice.upload_signatures({alice.user_id: {
        d: alice.self_signing.sign(alice.device_keys(), alice.user_id)}}) == {}
    alice.device = Key()
    alice.upload_device_keys()
    sigs = alice.query(alice.user_id)["device_keys"][alice.user_id][d]["signatures"]
    assert set(sigs[alice.user_id]) == {f"ed25519:{d}"}


def test_cross_signing_changes_show_in_a_room_mates_device_lists(shared_server, alice, bob):
    room = alice.post("/createRoom", {"invite": [bob.user_id]}).json()["room_id"]
    r = bob.post(f"/rooms/{room}/join", {})
    assert r.status_code == 200, show(r)

    def sync(who, since=None):
        params = {"since": since} if since else {}
        r = shared_server.get(V3 + "/sync", headers=who.h, params=params, timeout=20)
        assert r.status_code == 200, show(r)
        assert_matches_spec(r.json(), "sync.yaml", "/sync", "get", 200)
        return r.json()

    since = sync(bob)["next_batch"]
    alice.upload_signing_keys()
    body = sync(bob, since)
    assert alice.user_id in body["device_lists"]["changed"]

    # A long-poll is woken by a signature upload.
    alice.upload_device_keys()
    since = sync(bob)["next_batch"]
    assert alice.upload_signatures({alice.user_id: {
        alice.s.device_id: alice.self_signing.sign(alice.device_keys(), alice.user_id)}}) == {}
    body = sync(bob, since)
    assert alice.user_id in body["device_lists"]["changed"]

    # A repeat of the same keys changes nothing.
    since = body["next_batch"]
    alice.upload_signing_keys()
    r = shared_server.get(V3 + "/sync", headers=bob.h, params={"since": since, "timeout": 0})
    assert alice.user_id not in r.json().get("device_lists", {}).get("changed", [])


def test_signature_upload_of_too_many_keys_is_refused(alice):
    body = {alice.user_id: {f"K{i}": {} for i in range(1001)}}
    assert_matrix_error(alice.post("/keys/signatures/upload", body), 400, "M_BAD_JSON")
    # At the limit the request is served (each unknown key is a failure).
    body = {alice.user_id: {f"K{i}": {} for i in range(1000)}}
    assert len(alice.upload_signatures(body)[alice.user_id]) == 1000
