"""[tokens] warm_cache_at_startup: with it on, every usable access token is in the token cache
when the server starts answering; off (the default), a token is loaded by its first request
after a restart (one storage read, a cache miss) and is cached from then on. Either way the
token works, and a session revoked while the server was down stays revoked."""

from __future__ import annotations

import requests

import myelin_harness as h
from client_helpers import register_ok, token_works, unique_name


def lookups(metrics_port: int, result: str) -> int:
    text = requests.get(f"http://{h.LOCAL}:{metrics_port}/metrics", timeout=5).text
    prefix = f'myelin_token_cache_lookups_total{{result="{result}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, text
    return int(float(lines[0][len(prefix):]))


def restarted_with(server_factory, warm: bool | None):
    """A server with one live and one logged-out session, restarted; its metrics port and the
    two sessions' access tokens."""
    metrics_port = h.free_port()
    config = {"metrics": {"enabled": True, "port": metrics_port}}
    if warm is not None:
        config["tokens"] = {"warm_cache_at_startup": warm}
    server = server_factory(config)
    live = register_ok(server, unique_name("warm"))
    gone = register_ok(server, unique_name("gone"))
    r = server.post("/_matrix/client/v3/logout",
                    headers={"Authorization": f"Bearer {gone.access_token}"})
    assert r.status_code == 200, r.text
    server.restart()
    return server, metrics_port, live.access_token, gone.access_token


def test_default_loads_a_token_on_its_first_request_after_a_restart(server_factory):
    server, port, live, gone = restarted_with(server_factory, None)
    assert server.log_text().count("token cache warmed") == 0
    misses, hits = lookups(port, "miss"), lookups(port, "hit")
    assert token_works(server, live)
    # A miss (the request path may look twice before it reads storage), no hit.
    after_first = lookups(port, "miss")
    assert after_first > misses
    assert lookups(port, "hit") == hits
    assert token_works(server, live)  # cached now
    assert (lookups(port, "miss"), lookups(port, "hit")) == (after_first, hits + 1)
    assert not token_works(server, gone)


def test_warm_cache_at_startup_loads_every_live_token_before_serving(server_factory):
    server, port, live, gone = restarted_with(server_factory, True)
    server.wait_for_log(r"token cache warmed with 1 access tokens")
    misses, hits = lookups(port, "miss"), lookups(port, "hit")
    assert token_works(server, live)
    assert (lookups(port, "miss"), lookups(port, "hit")) == (misses, hits + 1)
    assert not token_works(server, gone)
