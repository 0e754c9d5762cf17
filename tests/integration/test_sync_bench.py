"""The /sync benchmark (bench/sync_bench.py, issue #8 §5) run in a tiny configuration against the
built server, so that the harness cannot rot unnoticed: every figure it reports must exist and
the deliveries it counts must be complete. It measures nothing here (timings are never
asserted). Also the pure parts: percentiles and the report, and the sync section of
bench/run_bench.py's REPORT.md."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import myelin_harness as h

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
import sync_bench  # noqa: E402

TINY = {"members": 3, "messages": 5, "rooms": 3, "room_messages": 2, "duration": 1,
        "senders": 2, "idle_polls": 20, "repeat": 2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sync-bench") / "SYNC.md"
    scratch = tmp_path_factory.mktemp("sync-bench-scratch")
    argv = [sys.executable, str(BENCH / "sync_bench.py"), "--quick", "--output", str(out)]
    for key, value in TINY.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    env = dict(os.environ, MYELIN_BUILD=str(h.binary_path().parent),
               MYELIN_BENCH_TMP=str(scratch))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    raw = json.loads(out.with_suffix(".json").read_text())
    # The scratch folder (databases, configurations, logs) is deleted at the end.
    assert list(scratch.iterdir()) == []
    return p, out.read_text(), raw["results"]


def test_latencies_cover_every_message_and_receiver(tiny_run):
    _, _, res = tiny_run
    r = res["sqlite"]
    one, everyone, hub = r["latency_1"], r["latency_all"], r["latency_hub"]
    assert one["messages"] == TINY["messages"] and one["receivers"] == 1
    assert everyone["messages"] == TINY["messages"]
    assert everyone["receivers"] == TINY["members"] - 1  # the sender's own copy is not counted
    assert everyone["from_put_done"]["n"] == TINY["messages"] * (TINY["members"] - 1)
    assert hub["messages"] == 10 and hub["receivers"] == 1  # at least 10 messages
    for x in (one, everyone, hub):
        for key in ("from_put_done", "from_put_start", "put", "last_receiver_from_put_done"):
            assert x[key]["p50_ms"] is not None and x[key]["p99_ms"] >= x[key]["p50_ms"]
        # From the PUT's start can only be later than from its answer.
        assert x["from_put_start"]["p50_ms"] >= x["from_put_done"]["p50_ms"]
        assert x["server_cpu_ms_per_message"] > 0


def test_throughput_delivers_every_message_to_every_member(tiny_run):
    _, _, res = tiny_run
    t = res["sqlite"]["throughput"]
    assert t["sent"] > 0 and t["senders"] == TINY["senders"]
    assert t["receivers"] == TINY["members"]
    assert t["caught_up"] and t["delivered"] == t["expected"] == t["sent"] * TINY["members"]
    assert t["sent_per_s"] > 0 and t["delivered_per_s_in_window"] > 0
    assert t["sync_answers"] > 0 and t["sync_answer"]["p99_ms"] is not None
    assert t["server_cpu_us_per_delivered"] > 0


def test_initial_sync_sees_every_room(tiny_run):
    _, _, res = tiny_run
    i = res["sqlite"]["initial"]
    assert i["rooms"] == TINY["rooms"] and len(i["runs"]) == TINY["repeat"]
    assert i["bytes"] > 1000 and i["ms"] > 0
    # Each room holds more than 10 events (its state and 2 messages): default timeline limit.
    assert i["timeline_events"] == TINY["rooms"] * 10
    for key in ("empty", "elsewhere"):
        assert i[f"incremental_{key}_ms"] > 0 and i[f"incremental_{key}_one_room_ms"] > 0
        assert i[f"incremental_{key}_cpu_us"] > 0


def test_idle_long_polls_wait_until_one_message_wakes_them_all(tiny_run):
    _, _, res = tiny_run
    d = res["sqlite"]["idle_polls"]
    assert d["long_polls"] == TINY["idle_polls"]
    assert d["answered_before_wake"] == 0  # every long-poll was parked, none timed out
    assert d["answered_after_wake"] == TINY["idle_polls"]
    assert d["wake_all_ms"] is not None
    for key in ("kib_per_conn", "kib_per_poll_extra", "kib_per_poll"):
        assert isinstance(d[key], float)
    assert d["rss_polls_kib"] > 0


def test_the_report_has_every_figure(tiny_run):
    p, report, _ = tiny_run
    assert "## /sync (issue #8 §5)" in report
    for needle in ("send → sync, 1 receiver", "send → sync, 3 members polling",
                   "send → sync, receiver in 3 rooms", "messages/s, one room of 3 members",
                   "initial sync, 3 rooms", "incremental sync, nothing new",
                   "incremental sync, a new event in another room",
                   "memory per idle long-poll", "one message wakes 20 long-polls"):
        assert needle in report, needle
    assert "n/a" not in report and "failed" not in report
    assert "Report:" in p.stdout


def test_run_bench_report_has_a_sync_section(tiny_run, tmp_path):
    import run_bench
    _, _, res = tiny_run
    ctx = argparse.Namespace(rounds=1, duration=1, warmup=1, sessions=1, scale_big=1,
                             idle_conns=1, storm_logins=1, output=tmp_path / "REPORT.md")
    meta = {"started": "s", "finished": "f", "elapsed_s": 1.0, "command": "c", "commit": "x",
            "dirty": False, "cores": 2, "cpu_model": "cpu", "kernel": "k", "load_start": "0",
            "load_end": "0"}
    rows = run_bench.write_report(ctx, {"sync": res}, meta)
    assert [r["bench"] for r in rows] == ["sync: send → sync", "sync: send → sync",
                                          "sync: one room", "sync: initial",
                                          "sync: idle long-poll"]
    text = ctx.output.read_text()
    assert "| sync: one room | 3 members, 2 senders |" in text
    assert "## /sync (issue #8 §5)" in text
    assert "sync" in run_bench.BENCHMARKS


# ---- pure parts --------------------------------------------------------------------------------

def test_percentiles_by_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert sync_bench.pct(values, 50) == 50
    assert sync_bench.pct(values, 99) == 99
    assert sync_bench.pct(values, 100) == 100
    assert sync_bench.pct([7], 99) == 7
    assert sync_bench.pct([], 50) is None
    d = sync_bench.dist_ms([0.001, 0.002, 0.003])
    assert d == {"n": 3, "p50_ms": 2.0, "p99_ms": 3.0, "max_ms": 3.0}
    assert sync_bench.dist_ms([])["p50_ms"] is None


def test_catching_up_waits_for_every_message_not_only_the_highest_number():
    # Two senders: message 8 committed (and was read) before message 7, which one poller has
    # not read yet. The throughput run must not stop its pollers then.
    board = sync_bench.Board(pollers=[])
    board.record(0, [7, 8], 0.0, 0.001, False)
    board.record(1, [8], 0.0, 0.001, False)
    assert board.wait_all(8, {0, 1}, 0.05)
    assert not board.wait_every([7, 8], {0, 1}, 0.05)
    threading.Timer(0.05, board.record, args=(1, [7], 0.0, 0.001, False)).start()
    assert board.wait_every([7, 8], {0, 1}, 5)


def test_report_names_a_failed_or_skipped_backend():
    lines = sync_bench.report_lines({"sqlite": {"error": "boom"},
                                     "postgres": {"skipped": "PostgreSQL binaries not installed"}})
    text = "\n".join(lines)
    assert "| sqlite | failed | `boom` | |" in text
    assert "| postgres | not measured | PostgreSQL binaries not installed | |" in text
    assert sync_bench.summary_rows({"sqlite": {"error": "boom"}}) == []


def test_the_sync_path_carries_since_timeout_and_the_filter():
    path = sync_bench.sync_path("s1_2_3_4", 30000)
    assert path.startswith("/_matrix/client/v3/sync?filter=%7B")
    assert "since=s1_2_3_4" in path and path.endswith("timeout=30000")
    assert sync_bench.sync_path(filt=None) == "/_matrix/client/v3/sync"
