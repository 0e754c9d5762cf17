"""Black-box tests of POST /refresh (MSC2918, v1.3+): rotation, retry safety (idempotent
across restarts and under concurrency), old-token semantics and reuse detection."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import (ACCESS_TOKEN_RE, R0, REFRESH_TOKEN_RE, V1, V3, bearer, change_char,
                            forge_token, login_ok, refresh, refresh_ok, register_ok, show,
                            unique_name, whoami)

REFRESH_PREFIXES = pytest.mark.parametrize("prefix", [V3, R0, V1], ids=["v3", "r0", "v1"])


def fresh_session(server, device_id=None):
    """Registers a user and logs in with refresh_token: true -> Session (AT0, RT0)."""
    reg = register_ok(server, unique_name("rt"))
    s = login_ok(server, reg.localpart, reg.password, refresh_token=True, device_id=device_id)
    assert s.refresh_token, f"login with refresh_token: true gave no refresh_token: {s.body}"
    return s


def pair(body: dict) -> tuple:
    return body.get("access_token"), body.get("refresh_token")


def assert_works(server, token, what="token", device_id=None):
    r = whoami(server, token)
    assert r.status_code == 200, f"{what} must work: {show(r)}"
    if device_id is not None:
        assert r.json().get("device_id") == device_id, f"{what} is on another device: {r.json()}"


def assert_dead(server, token, what="token", soft_logout=None):
    r = whoami(server, token)
    body = assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
    if soft_logout is True:
        assert body.get("soft_logout") is True, f"{what}: expected soft_logout true: {body}"
    return body


# ============================================================================ basics

@REFRESH_PREFIXES
def test_refresh_returns_a_new_pair_on_the_same_device(shared_server, prefix):
    s = fresh_session(shared_server, device_id="REFRESHDEV")
    r = refresh(shared_server, s.refresh_token, prefix=prefix)
    assert r.status_code == 200, f"refresh under {prefix}: {show(r)}"
    body = r.json()
    assert_matches_spec(body, "refresh.yaml", V3 + "/refresh", "post", 200)
    assert ACCESS_TOKEN_RE.match(body["access_token"]), body
    assert REFRESH_TOKEN_RE.match(body.get("refresh_token") or ""), body
    assert body["access_token"] != s.access_token and body["refresh_token"] != s.refresh_token
    assert isinstance(body.get("expires_in_ms"), int), body
    assert 290_000 <= body["expires_in_ms"] <= 300_000, body
    assert_works(shared_server, body["access_token"], "the new access token", "REFRESHDEV")


def test_refresh_needs_no_access_token_and_ignores_a_stale_one(shared_server):
    s = fresh_session(shared_server)
    r1 = refresh(shared_server, s.refresh_token, headers={"Authorization": "Bearer xyz"})
    assert r1.status_code == 200, f"garbage Authorization header on /refresh: {show(r1)}"
    r2 = refresh(shared_server, r1.json()["refresh_token"],
                 headers={"Authorization": f"Bearer {forge_token('myat_')}"})
    assert r2.status_code == 200, f"unknown access token in the header on /refresh: {show(r2)}"
    r3 = refresh(shared_server, r2.json()["refresh_token"], headers=bearer(s.access_token))
    assert r3.status_code == 200, f"old access token in the header on /refresh: {show(r3)}"
    assert_works(shared_server, r3.json()["access_token"])


@REFRESH_PREFIXES
def test_refresh_bad_requests(shared_server, prefix):
    s = fresh_session(shared_server)
    path = prefix + "/refresh"
    assert_matrix_error(shared_server.post(path, json={}), 400, "M_MISSING_PARAM")
    assert_matrix_error(shared_server.post(path, data=b"{nope",
                                           headers={"Content-Type": "application/json"}),
                        400, "M_NOT_JSON")
    for bad in ("xyz", forge_token("myrt_"), s.access_token, change_char(s.refresh_token, 54)):
        assert_matrix_error(refresh(shared_server, bad, prefix=prefix), 401, "M_UNKNOWN_TOKEN")
    assert_works(shared_server, s.access_token)
    assert refresh(shared_server, s.refresh_token).status_code == 200


def test_login_refresh_refresh_refresh_chain(shared_server):
    """Regression test for matrix-authentication-service#4883: the second refresh failed."""
    s = fresh_session(shared_server, device_id="CHAIN")
    rt = s.refresh_token
    seen = {s.access_token, s.refresh_token}
    for step in range(1, 4):
        r = refresh(shared_server, rt)
        assert r.status_code == 200, f"refresh #{step} (with RT{step - 1}): {show(r)}"
        at, rt = pair(r.json())
        assert at not in seen and rt not in seen, f"refresh #{step} repeated a token"
        seen |= {at, rt}
        assert_works(shared_server, at, f"AT{step}", "CHAIN")


# ============================================================================ retry safety

def test_refresh_retry_returns_identical_pair_even_after_restart(server):
    s = fresh_session(server)
    first = refresh_ok(server, s.refresh_token)
    second = refresh_ok(server, s.refresh_token)
    assert pair(second) == pair(first), \
        f"a retry with RT0 must return the same pair: {pair(first)} vs {pair(second)}"

    server.restart()
    third = refresh_ok(server, s.refresh_token)
    assert pair(third) == pair(first), \
        f"a retry with RT0 after a restart must return the same pair: {pair(first)} vs " \
        f"{pair(third)}"
    assert_works(server, first["access_token"], "AT1 after the restart")
    assert refresh(server, first["refresh_token"]).status_code == 200, "RT1 after the restart"


def test_concurrent_refreshes_of_one_token_share_one_lineage(shared_server):
    s = fresh_session(shared_server, device_id="RACE")
    n = 20
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait(timeout=10)
        return refresh(shared_server, s.refresh_token)

    with ThreadPoolExecutor(max_workers=n) as pool:
        responses = list(pool.map(one, range(n)))
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * n, \
        f"concurrent refreshes: statuses {statuses}; first failure: " \
        f"{next((show(r) for r in responses if r.status_code != 200), '')}"
    pairs = {pair(r.json()) for r in responses}
    assert len(pairs) == 1, f"{len(pairs)} different pairs from one refresh token: {pairs}"
    at1, rt1 = pairs.pop()
    assert_works(shared_server, at1, "AT1", "RACE")
    r = refresh(shared_server, rt1)
    assert r.status_code == 200, f"RT1 after the race: {show(r)}"
    assert_works(shared_server, r.json()["access_token"], "AT2", "RACE")


# ============================================================================ the old access token

def test_old_access_token_lives_until_the_new_one_is_used(shared_server):
    s = fresh_session(shared_server)
    at1, rt1 = pair(refresh_ok(shared_server, s.refresh_token))
    assert_works(shared_server, s.access_token, "AT0 before AT1 was used")
    assert_works(shared_server, s.access_token, "AT0 used twice before AT1 was used")
    assert_works(shared_server, at1, "AT1")
    assert_dead(shared_server, s.access_token, "AT0 after AT1 was used")
    # Presenting the old access token is no theft signal: nothing gets revoked.
    assert_works(shared_server, at1, "AT1 after AT0 was presented again")
    assert refresh(shared_server, rt1).status_code == 200, "RT1 after AT0 was presented again"


# ============================================================================ reuse detection

@pytest.mark.parametrize("use", ["access", "refresh"], ids=["AT1_used", "RT1_used"])
def test_refresh_token_reuse_revokes_the_session_but_keeps_the_device(shared_server, use):
    s = fresh_session(shared_server, device_id="THEFT")
    other = login_ok(shared_server, s.localpart, s.password, refresh_token=True)
    at1, rt1 = pair(refresh_ok(shared_server, s.refresh_token))
    live = [("AT1", at1)]
    if use == "access":
        assert_works(shared_server, at1, "AT1")
        refresh_tokens = [("RT1", rt1)]
    else:
        at2, rt2 = pair(refresh_ok(shared_server, rt1))
        live.append(("AT2", at2))
        refresh_tokens = [("RT1", rt1), ("RT2", rt2)]

    r = refresh(shared_server, s.refresh_token)
    body = assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
    assert body.get("soft_logout") is True, f"reuse of RT0 must answer soft_logout true: {body}"

    # The client's current access token tells it to sign in again (keeping its state).
    current_name, current = live[-1]
    assert_dead(shared_server, current, f"{current_name} after RT0 reuse", soft_logout=True)
    for name, token in live + [("AT0", s.access_token)]:
        assert_dead(shared_server, token, f"{name} after RT0 reuse")
    for name, token in refresh_tokens:
        assert_matrix_error(refresh(shared_server, token), 401, "M_UNKNOWN_TOKEN")

    # Only that session died: the user's other device is fine ...
    assert_works(shared_server, other.access_token, "another device of the user")
    # ... and the device itself stays: signing in again into it works.
    again = login_ok(shared_server, s.localpart, s.password, device_id="THEFT",
                     refresh_token=True)
    assert_works(shared_server, again.access_token, "a new login into the same device", "THEFT")
    assert refresh(shared_server, again.refresh_token).status_code == 200


def test_reuse_without_session_revocation(server_factory):
    hs = server_factory(tokens={"refresh_reuse_revokes_session": False})
    s = fresh_session(hs)
    at1, rt1 = pair(refresh_ok(hs, s.refresh_token))
    assert_works(hs, at1, "AT1")
    assert_matrix_error(refresh(hs, s.refresh_token), 401, "M_UNKNOWN_TOKEN")
    assert_works(hs, at1, "AT1 after RT0 reuse (refresh_reuse_revokes_session = false)")
    r = refresh(hs, rt1)
    assert r.status_code == 200, f"RT1 after RT0 reuse without revocation: {show(r)}"


def test_forged_or_tampered_refresh_tokens_revoke_nothing(shared_server):
    s = fresh_session(shared_server)
    at1, rt1 = pair(refresh_ok(shared_server, s.refresh_token))
    assert_works(shared_server, at1, "AT1")  # RT0 is now rotated out: a replay would be theft
    fakes = {
        "RT0 with its last char flipped": change_char(s.refresh_token, 54),
        "RT1 with its last char flipped": change_char(rt1, 54),
        "RT0 with a body char changed": change_char(s.refresh_token, 10),
        "a random well-formed refresh token": forge_token("myrt_"),
    }
    for what, fake in fakes.items():
        r = refresh(shared_server, fake)
        assert r.status_code == 401, f"{what}: {show(r)}"
        assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
    assert_works(shared_server, at1, "AT1 after forged refresh tokens")
    r = refresh(shared_server, rt1)
    assert r.status_code == 200, f"RT1 after forged refresh tokens: {show(r)}"
