"""GET /metrics: Prometheus text on its own listener ([metrics] address/port), counting what the
issue lists. Each server here enables metrics on a free port (the harness default disables
them so that parallel servers don't fight over 127.0.0.1:9008)."""

from __future__ import annotations

import re

import requests

import myelin_harness as h
from client_helpers import (V3, bearer, forge_token, login, login_ok, logout, refresh_ok, register_ok,
                            unique_name, whoami)

# name, optional {labels} (label values are quoted and may hold braces), value.
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (\S+)$')


def start_with_metrics(server_factory, **kw):
    port = h.free_port()
    server = server_factory(metrics={"enabled": True, "address": h.LOCAL, "port": port}, **kw)
    return server, port


def scrape(port: int) -> requests.Response:
    return requests.get(f"http://{h.LOCAL}:{port}/metrics", timeout=5)


def samples(port: int) -> dict[str, float]:
    """Every sample line as {'name{labels}': value}."""
    r = scrape(port)
    assert r.status_code == 200, r.text[:300]
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def value(s: dict[str, float], key: str) -> float:
    return s.get(key, 0.0)


def test_metrics_served_on_their_own_port_in_prometheus_format(server_factory):
    server, port = start_with_metrics(server_factory)
    assert port != server.port
    r = scrape(port)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = set()
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            names.add(name)
        elif line and not line.startswith("#"):
            assert SAMPLE_RE.match(line), line
    assert names, r.text[:500]
    assert all(n.startswith("myelin_") for n in names), sorted(names)
    # The scrape-time gauges are there from the first scrape.
    assert "myelin_token_cache_tokens" in names
    assert "myelin_token_cache_sessions" in names
    # Every counter family the issue names exists before anything happened, at zero, so that a
    # rate() over the first event is right.
    for family in ("myelin_logins_total", "myelin_registrations_total", "myelin_refreshes_total",
                   "myelin_session_revocations_total", "myelin_rate_limited_total",
                   "myelin_token_cache_lookups_total", "myelin_password_hash_queue_depth",
                   "myelin_password_hash_seconds"):
        assert family in names, f"{family} missing from the first scrape"
    first = samples(port)
    assert first['myelin_logins_total{outcome="failed"}'] == 0
    assert first['myelin_refreshes_total{outcome="reuse_detected"}'] == 0
    # Only /metrics: anything else on the metrics port is 404.
    assert requests.get(f"http://{h.LOCAL}:{port}/", timeout=5).status_code == 404
    assert requests.get(f"http://{h.LOCAL}:{port}/health", timeout=5).status_code == 404
    assert requests.get(f"http://{h.LOCAL}:{port}/_matrix/client/versions",
                        timeout=5).status_code == 404


def test_metrics_not_served_on_the_client_port(server_factory):
    server, _ = start_with_metrics(server_factory)
    r = server.get("/metrics")
    assert r.status_code == 404
    assert "myelin_" not in r.text


def test_metrics_listener_off_when_disabled(server_factory):
    port = h.free_port()
    server = server_factory(metrics={"enabled": False, "address": h.LOCAL, "port": port})
    assert server.get("/_matrix/client/versions").status_code == 200
    try:
        requests.get(f"http://{h.LOCAL}:{port}/metrics", timeout=2)
        raise AssertionError("the metrics port answered although [metrics] enabled = false")
    except requests.ConnectionError:
        pass


def test_counters_move_with_logins_refreshes_and_whoami(server_factory):
    server, port = start_with_metrics(server_factory)
    alice = register_ok(server, unique_name("metrics"))
    before = samples(port)

    s = login_ok(server, alice.user_id, alice.password, refresh_token=True)
    assert login(server, alice.user_id, "wrong-password").status_code == 403
    for _ in range(3):
        assert whoami(server, s.access_token).status_code == 200
    refreshed = refresh_ok(server, s.refresh_token)
    assert whoami(server, refreshed["access_token"]).status_code == 200
    assert logout(server, refreshed["access_token"]).status_code == 200

    after = samples(port)

    def moved(key: str) -> float:
        return value(after, key) - value(before, key)

    assert moved('myelin_logins_total{outcome="ok"}') == 1, after
    assert moved('myelin_logins_total{outcome="failed"}') == 1
    assert moved('myelin_registrations_total{kind="user"}') == 0
    assert moved('myelin_refreshes_total{outcome="ok"}') == 1
    # whoami with a cached token: hits; the server caches tokens it issues, so every whoami hits.
    assert moved('myelin_token_cache_lookups_total{result="hit"}') >= 4
    assert moved('myelin_session_revocations_total{reason="logout"}') == 1
    # Requests per route and status, with a latency histogram.
    whoami_ok = [k for k in after if k.startswith("myelin_http_requests_total{")
                 and "whoami" in k and 'status="200"' in k]
    assert whoami_ok, sorted(k for k in after if k.startswith("myelin_http_requests_total"))
    assert sum(moved(k) for k in whoami_ok) >= 4
    assert any(k.startswith("myelin_http_request_duration_seconds_bucket{") for k in after)
    assert any(k.startswith("myelin_http_request_duration_seconds_count{") for k in after)
    # Password hashing latency (every login and the registration hash a password).
    assert value(after, "myelin_password_hash_seconds_count") >= 3
    assert "myelin_password_hash_queue_depth" in after


def test_registration_and_cache_miss_counters(server_factory):
    server, port = start_with_metrics(server_factory)
    before = samples(port)
    register_ok(server, unique_name("metrics"))
    assert whoami(server, forge_token("myat_")).status_code == 401
    after = samples(port)
    assert (value(after, 'myelin_registrations_total{kind="user"}')
            - value(before, 'myelin_registrations_total{kind="user"}')) == 1
    # A well-formed but unknown token misses the cache (a malformed one never reaches it).
    assert (value(after, 'myelin_token_cache_lookups_total{result="miss"}')
            - value(before, 'myelin_token_cache_lookups_total{result="miss"}')) >= 1
    assert value(after, "myelin_token_cache_tokens") >= 1
    assert value(after, "myelin_token_cache_sessions") >= 1


def test_histogram_is_self_consistent(server_factory):
    server, port = start_with_metrics(server_factory)
    for _ in range(5):
        server.get(V3 + "/account/whoami", headers=bearer("nope"))
    text = scrape(port).text
    buckets: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'^(myelin_\w+)_bucket\{(.*)le="([^"]+)"\} (\S+)$', line)
        if m:
            le = float("inf") if m.group(3) == "+Inf" else float(m.group(3))
            buckets.setdefault(m.group(1) + "{" + m.group(2).rstrip(",") + "}", []).append(
                (le, float(m.group(4))))
            continue
        m = re.match(r"^(myelin_\w+)_count(\{.*\})? (\S+)$", line)
        if m:
            counts[m.group(1) + (m.group(2) or "{}")] = float(m.group(3))
    assert buckets
    for key, series in buckets.items():
        values = [v for _, v in series]
        assert values == sorted(values), f"{key}: buckets not cumulative: {series}"
        assert series[-1][0] == float("inf"), key
        assert counts[key] == series[-1][1], key
