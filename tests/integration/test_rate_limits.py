"""Rate limits, load shedding and the HTTP metrics, against the real binary.

Every server here turns [rate_limits] on with tiny buckets (the harness default is off), so a
handful of requests reaches each limit. What is checked:
- a 429 carries M_LIMIT_EXCEEDED, retry_after_ms, a Retry-After header and CORS headers that
  expose Retry-After to browsers;
- failed logins are limited per account, and guesses at unknown user names exactly like guesses
  at real ones; a locked-out account is refused before any password hashing; the lockout is
  recorded once as a security event (real accounts only);
- refreshes are limited per device on both refresh endpoints (one shared budget), a refused
  refresh changes nothing, other devices are unaffected;
- registration is limited per IP;
- X-Forwarded-For is ignored from untrusted peers (spoofing does not escape the limit) and
  honoured from trusted proxies (right-most untrusted address);
- exempt users (bots) log in and make requests without limit, login included, but guesses at
  their passwords are limited like anyone's;
- enabled = false turns it all off;
- a full hashing queue sheds logins and registrations at once with 503 + Retry-After;
- the dispatcher counts requests per route/method/status and their latency.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import time

import requests

from client_helpers import (V3, R0, bearer, legacy_refresh, login, login_ok, mxid, refresh,
                            register, register_ok, show, unique_name, unique_password, whoami)
import myelin_harness as h
from myelin_harness import (assert_cors, assert_matrix_error, free_port, header_tokens,
                            start_server)

GENEROUS = {"per_second": 1000, "burst": 1000}


def limits(**buckets) -> dict:
    """[rate_limits] enabled, every bucket generous except those given as (per_second, burst)."""
    out: dict = {"enabled": True}
    for name in ("client_ip", "login", "failed_login", "registration", "refresh",
                 "token_validity"):
        per_second, burst = buckets.pop(name, (GENEROUS["per_second"], GENEROUS["burst"]))
        out[f"{name}_per_second"] = per_second
        out[f"{name}_burst"] = burst
    out.update(buckets)  # trusted_proxies, exempt_users
    return out


def assert_limited(r: requests.Response) -> dict:
    """The full 429 contract: errcode, both retry fields, CORS exposing Retry-After."""
    body = assert_matrix_error(r, 429, "M_LIMIT_EXCEEDED")
    ms = body.get("retry_after_ms")
    assert isinstance(ms, int) and ms > 0, f"retry_after_ms missing or not positive: {show(r)}"
    retry_after = r.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, \
        f"Retry-After header missing or not whole seconds: {dict(r.headers)}"
    assert int(retry_after) * 1000 >= ms, "Retry-After must not be shorter than retry_after_ms"
    assert_cors(r.headers)
    assert "retry-after" in header_tokens(r.headers.get("Access-Control-Expose-Headers")), \
        f"Retry-After not exposed to browsers: {dict(r.headers)}"
    return body


def security_events(server, user_id: str, kind: str) -> list:
    return h.db_query(server,
                      "SELECT kind, detail FROM security_events WHERE user_id = ? AND kind = ?",
                      (user_id, kind))


def scrape(metrics_port: int) -> str:
    r = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    assert r.status_code == 200, r.text[:300]
    return r.text


def metric(text: str, name: str, **labels) -> float:
    """The value of the series `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


# ------------------------------------------------------------------------------ 429 contract

def test_client_ip_limit_answers_429_with_both_retry_fields_and_cors(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(client_ip=(0.01, 6)))
    statuses = []
    for _ in range(10):
        r = server.get("/_matrix/client/versions")
        statuses.append(r.status_code)
        if r.status_code == 429:
            body = assert_limited(r)
            # One token every 100 s: the wait is most of that.
            assert 1_000 < body["retry_after_ms"] <= 100_000
            assert int(r.headers["Retry-After"]) <= 100
            break
    assert 429 in statuses, f"never limited: {statuses}"
    assert statuses.count(200) <= 6, statuses  # the health check took one of six
    # Every request draws from the IP budget: unknown paths and authenticated routes too.
    assert_limited(server.get("/_matrix/client/v3/no/such/endpoint"))
    assert_limited(whoami(server, None))


# ------------------------------------------------------------------------------ failed logins

def test_failed_logins_limited_per_account_and_unknown_users_alike(tmp_path):
    metrics_port = free_port()
    server = start_server(tmp_path, rate_limits=limits(failed_login=(0.01, 3)),
                          metrics={"enabled": True, "port": metrics_port})
    alice = register_ok(server, unique_name("alice"))
    ghost = unique_name("ghost")  # never registered

    def guesses(user: str) -> list[int]:
        return [login(server, user, "wrong-" + unique_password()).status_code for _ in range(3)]

    assert guesses(alice.localpart) == [403, 403, 403]
    assert guesses(ghost) == [403, 403, 403]
    before = scrape(metrics_port)
    # The budget is per account: the right password is refused too, and so is the ghost.
    assert_limited(login(server, alice.localpart, alice.password))
    assert_limited(login(server, ghost, "whatever"))
    # The same account however it is spelled.
    assert_limited(login(server, "@" + alice.localpart.upper() + ":localhost", alice.password))
    after = scrape(metrics_port)
    # Refused before any hashing: the hashing histogram did not move.
    assert metric(after, "myelin_password_hash_seconds_count") == \
        metric(before, "myelin_password_hash_seconds_count")
    assert metric(after, "myelin_rate_limited_total", **{"class": "failed_login"}) >= 3
    assert metric(after, "myelin_logins_total", outcome="failed") >= 9

    # Other accounts from the same address are not affected.
    bob = register_ok(server, unique_name("bob"))
    login_ok(server, bob.localpart, bob.password)

    # One lockout, one security event, for the real account only.
    assert len(security_events(server, alice.user_id, "rate_limit_lockout")) == 1
    assert security_events(server, mxid(ghost), "rate_limit_lockout") == []


def test_a_login_storm_is_shed_without_waiting(tmp_path):
    # One hashing thread, one waiting slot, and a slow hash: most of 20 concurrent logins find
    # the queue full and must be answered at once instead of queueing behind the others.
    server = start_server(tmp_path, passwords={"argon2_memory_kib": 65536,
                                               "argon2_iterations": 4, "hashing_threads": 1,
                                               "hashing_queue": 1})
    user = register_ok(server, unique_name("storm"))
    url = server.url(V3 + "/login")
    body = {"type": "m.login.password", "password": user.password,
            "identifier": {"type": "m.id.user", "user": user.localpart}}

    def one() -> tuple[int, float, dict, dict]:
        started = time.monotonic()
        r = requests.post(url, json=body, timeout=30)
        return r.status_code, time.monotonic() - started, dict(r.headers), \
            (r.json() if r.content else {})

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: one(), range(20)))
    shed = [res for res in results if res[0] in (429, 503)]
    ok = [res for res in results if res[0] == 200]
    assert shed, f"nothing was shed: {[(s, round(t, 3)) for s, t, _, _ in results]}"
    assert ok, "the hashing pool should still serve some logins"
    assert all(res[0] in (200, 429, 503) for res in results), [res[0] for res in results]
    hash_time = min(t for s, t, _, _ in ok)
    for status, elapsed, headers, err in shed:
        assert headers.get("Retry-After", "").isdigit(), headers
        assert err.get("errcode") in ("M_UNKNOWN", "M_LIMIT_EXCEEDED"), err
        # Shed at once: well under the time of the hashes that were admitted.
        assert elapsed < max(0.5, 2 * hash_time), (elapsed, hash_time)

    # Registration sheds the same way.
    def reg() -> int:
        r = requests.post(server.url(V3 + "/register"), timeout=30,
                          json={"username": unique_name("r"), "password": unique_password(),
                                "auth": {"type": "m.login.dummy"}})
        return r.status_code
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        reg_statuses = list(pool.map(lambda _: reg(), range(12)))
    assert 503 in reg_statuses and 200 in reg_statuses, reg_statuses


# ------------------------------------------------------------------------------ refresh

def test_refresh_limited_per_device_on_both_endpoints(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(refresh=(1, 2)))
    user = register_ok(server, unique_name("rf"), refresh_token=True)
    rt = user.refresh_token
    for _ in range(2):
        r = refresh(server, rt)
        assert r.status_code == 200, show(r)
        rt = r.json()["refresh_token"]
    assert_limited(refresh(server, rt))
    # The legacy endpoint draws from the same per-device budget, and answers 429 too (not 403).
    assert_limited(legacy_refresh(server, rt))

    # Another device of the same user has its own budget.
    other = login_ok(server, user.localpart, user.password, refresh_token=True)
    assert refresh(server, other.refresh_token).status_code == 200

    # The refused refreshes changed nothing: once a token is back, the same refresh token works
    # (were it rotated or spent, this would be reuse and fail).
    time.sleep(1.2)
    r = refresh(server, rt)
    assert r.status_code == 200, show(r)


def test_legacy_refresh_alone_is_limited_per_device(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(refresh=(0.01, 2)))
    user = register_ok(server, unique_name("lg"), refresh_token=True)
    rt = user.refresh_token
    for _ in range(2):
        r = legacy_refresh(server, rt)
        assert r.status_code == 200, show(r)
        rt = r.json()["refresh_token"]
    assert_limited(legacy_refresh(server, rt))


# ------------------------------------------------------------------------------ registration

def test_registration_limited_per_ip(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(registration=(0.01, 2)))
    register_ok(server, unique_name("r1"))
    register_ok(server, unique_name("r2"))
    assert_limited(register(server, {"username": unique_name("r3"), "password": "x" * 12,
                                     "auth": {"type": "m.login.dummy"}}))
    # Availability checks are not registrations.
    r = server.get(V3 + "/register/available", params={"username": unique_name("free")})
    assert r.status_code == 200, show(r)


def test_registration_token_validity_checks_limited_per_ip(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(token_validity=(0.01, 2)),
                          registration={"requires_token": True})
    path = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for guess in ("guess-1", "guess-2"):
        r = server.get(path, params={"token": guess})
        assert r.status_code != 429, show(r)
    # Guessing tokens is what this limit is for.
    assert_limited(server.get(path, params={"token": "guess-3"}))


# ------------------------------------------------------------------------------ X-Forwarded-For

def _register_from(server, forwarded_for: str) -> requests.Response:
    return register(server, {"username": unique_name("xff"), "password": unique_password(),
                             "auth": {"type": "m.login.dummy"}},
                    headers={"X-Forwarded-For": forwarded_for})


def test_forwarded_for_ignored_from_untrusted_peer(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(registration=(0.01, 1),
                                                       trusted_proxies=[]))
    assert _register_from(server, "198.51.100.1").status_code == 200
    # A new made-up address per request does not buy a new budget.
    assert_limited(_register_from(server, "198.51.100.2"))
    assert_limited(_register_from(server, "198.51.100.3, 198.51.100.4"))


def test_forwarded_for_honoured_from_trusted_proxy(tmp_path):
    server = start_server(tmp_path, rate_limits=limits(registration=(0.01, 1),
                                                       trusted_proxies=["127.0.0.1"]))
    assert _register_from(server, "198.51.100.1").status_code == 200
    assert_limited(_register_from(server, "198.51.100.1"))
    # A different client behind the proxy has its own budget.
    assert _register_from(server, "198.51.100.2").status_code == 200
    # What the client wrote left of the proxy's entry is not believed: the right-most
    # untrusted address (198.51.100.1, spent) counts.
    assert_limited(_register_from(server, "203.0.113.9, 198.51.100.1"))
    # A proxy that adds its own header line instead of appending to the client's: every line
    # counts, so the spoofed first line does not buy a new budget.
    conn = http.client.HTTPConnection(h.LOCAL, server.port, timeout=10)
    body = json.dumps({"username": unique_name("xff"), "password": unique_password(),
                       "auth": {"type": "m.login.dummy"}})
    conn.putrequest("POST", V3 + "/register")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    conn.putheader("X-Forwarded-For", "203.0.113.50")  # written by the client
    conn.putheader("X-Forwarded-For", "198.51.100.1")  # added by the proxy
    conn.endheaders(body.encode())
    r = conn.getresponse()
    assert r.status == 429, (r.status, r.read())
    conn.close()


# ------------------------------------------------------------------------------ exemptions

def test_exempt_bot_logs_in_repeatedly(tmp_path):
    bot_name = unique_name("bot")
    server = start_server(tmp_path, rate_limits=limits(
        client_ip=(0.01, 14), login=(0.01, 2), failed_login=(0.01, 2),
        exempt_users=[mxid(bot_name)]))
    bot = register_ok(server, bot_name)
    alice = register_ok(server, unique_name("alice"))
    for i in range(16):  # beyond the login and per-IP budgets
        r = login(server, bot.localpart if i % 2 else mxid(bot.localpart), bot.password)
        assert r.status_code == 200, f"exempt login #{i}: {show(r)}"
    # Its authenticated requests are not limited either.
    for _ in range(20):
        assert whoami(server, bot.access_token).status_code == 200
    # Everyone else from this address still is (the bot spent none of the budgets).
    assert login(server, alice.localpart, alice.password).status_code == 200
    assert login(server, alice.localpart, alice.password).status_code == 200
    assert_limited(login(server, alice.localpart, alice.password))
    statuses = [whoami(server, alice.access_token).status_code for _ in range(14)]
    assert 429 in statuses, statuses
    assert whoami(server, bot.access_token).status_code == 200


def test_exempt_users_passwords_are_not_open_to_guessing(tmp_path):
    """The exemption covers the bot's own logins, not guesses at its password."""
    bot_name = unique_name("bot")
    server = start_server(tmp_path, rate_limits=limits(
        failed_login=(0.01, 2), exempt_users=[mxid(bot_name)]))
    bot = register_ok(server, bot_name)
    for _ in range(2):
        assert login(server, bot.localpart, "wrong-guess").status_code == 403
    assert_limited(login(server, bot.localpart, "another-guess"))


# ------------------------------------------------------------------------------ off switch

def test_disabled_limits_allow_everything(tmp_path):
    server = start_server(tmp_path, rate_limits={
        "enabled": False, "client_ip_per_second": 0.01, "client_ip_burst": 1,
        "login_per_second": 0.01, "login_burst": 1, "failed_login_per_second": 0.01,
        "failed_login_burst": 1, "registration_per_second": 0.01, "registration_burst": 1,
        "refresh_per_second": 0.01, "refresh_burst": 1})
    user = register_ok(server, unique_name("off"), refresh_token=True)
    register_ok(server, unique_name("off"))
    for _ in range(5):
        assert login(server, user.localpart, "wrong").status_code == 403
    login_ok(server, user.localpart, user.password)
    rt = user.refresh_token
    for _ in range(3):
        r = refresh(server, rt)
        assert r.status_code == 200, show(r)
        rt = r.json()["refresh_token"]
    for _ in range(10):
        assert server.get("/_matrix/client/versions").status_code == 200


# ------------------------------------------------------------------------------ HTTP metrics

def test_http_requests_are_counted_per_route_method_and_status(tmp_path):
    metrics_port = free_port()
    server = start_server(tmp_path, rate_limits=limits(registration=(0.01, 1)),
                          metrics={"enabled": True, "port": metrics_port})
    user = register_ok(server, unique_name("m"), refresh_token=True)
    for _ in range(3):
        assert whoami(server, user.access_token).status_code == 200
    assert whoami(server, user.access_token, prefix=R0).status_code == 200
    assert whoami(server, None).status_code == 401
    assert server.get("/_matrix/client/v3/nowhere").status_code == 404
    assert_limited(register(server, {"username": unique_name("m2"), "password": "x" * 12,
                                     "auth": {"type": "m.login.dummy"}}))
    assert refresh(server, user.refresh_token).status_code == 200
    text = scrape(metrics_port)
    whoami_route = "/_matrix/client/{version}/account/whoami"
    assert metric(text, "myelin_http_requests_total", route=whoami_route, method="GET",
                  status="200") == 4
    assert metric(text, "myelin_http_requests_total", route=whoami_route, method="GET",
                  status="401") == 1
    assert metric(text, "myelin_http_requests_total", route="unmatched", method="GET",
                  status="404") == 1
    assert metric(text, "myelin_http_requests_total", route="/_matrix/client/{version}/register",
                  method="POST", status="429") == 1
    assert metric(text, "myelin_http_request_duration_seconds_count", route=whoami_route) == 5
    assert metric(text, "myelin_http_request_duration_seconds_bucket", route=whoami_route,
                  le="+Inf") == 5
    assert metric(text, "myelin_rate_limited_total", **{"class": "registration"}) == 1
    assert metric(text, "myelin_refreshes_total", outcome="ok") == 1
    assert metric(text, "myelin_password_hash_seconds_count") >= 1
    assert "myelin_password_hash_queue_depth" in text
