"""The benchmark harness (bench/): `run_bench.py --target URL` against a real myelin in a tiny
--quick configuration (it measures nothing here: the figures are only checked to exist), and the
pure parts: user-interactive auth flow choice, the targets table of issue #6, the reports.
Needs wrk and nginx (scripts/install-deps.sh installs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import myelin_harness as h
from client_helpers import login_ok, register_ok, show, unique_name

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
import run_bench as rb  # noqa: E402
import target_bench  # noqa: E402
import targets  # noqa: E402


# ---- user-interactive auth -------------------------------------------------------------------

DUMMY = {"stages": ["m.login.dummy"]}
TOKEN = {"stages": ["m.login.registration_token"]}
TOKEN_THEN_DUMMY = {"stages": ["m.login.registration_token", "m.login.dummy"]}
EMAIL = {"stages": ["m.login.email.identity"]}


def test_choose_flow_takes_the_first_flow_of_stages_it_can_complete():
    assert target_bench.choose_flow([EMAIL, DUMMY], have_token=False) == ["m.login.dummy"]
    assert target_bench.choose_flow([EMAIL, TOKEN_THEN_DUMMY], have_token=True) == \
        ["m.login.registration_token", "m.login.dummy"]
    assert target_bench.choose_flow([{"stages": []}], have_token=False) == []


def test_choose_flow_needs_a_token_for_the_registration_token_stage():
    assert target_bench.choose_flow([TOKEN_THEN_DUMMY], have_token=False) is None
    assert target_bench.choose_flow([EMAIL], have_token=True) is None
    assert target_bench.choose_flow([], have_token=True) is None
    assert target_bench.choose_flow(None, have_token=True) is None


def test_next_stage_skips_the_completed_ones():
    flow = ["m.login.registration_token", "m.login.dummy"]
    assert target_bench.next_stage(flow, []) == "m.login.registration_token"
    assert target_bench.next_stage(flow, None) == "m.login.registration_token"
    assert target_bench.next_stage(flow, ["m.login.registration_token"]) == "m.login.dummy"
    assert target_bench.next_stage(flow, flow) is None


def test_auth_for_each_stage():
    assert target_bench.auth_for("m.login.dummy", "S1") == {"type": "m.login.dummy",
                                                            "session": "S1"}
    assert target_bench.auth_for("m.login.dummy", None) == {"type": "m.login.dummy"}
    assert target_bench.auth_for("m.login.registration_token", "S2", "tok") == {
        "type": "m.login.registration_token", "session": "S2", "token": "tok"}
    with pytest.raises(ValueError):
        target_bench.auth_for("m.login.registration_token", "S2", None)


def test_loopback_detection():
    assert target_bench.is_loopback("http://127.0.0.1:8008")
    assert target_bench.is_loopback("http://localhost:8008/")
    assert target_bench.is_loopback("http://[::1]:8008")
    assert not target_bench.is_loopback("https://matrix.example.org")


def test_a_target_in_the_harness_s_own_scheduler_group_is_flagged():
    me = target_bench.autogroup()
    if me is None:  # kernel without autogroups: nothing to compare, nothing to warn about
        assert target_bench.shared_group_warning(os.getpid()) is None
        return
    assert "setsid" in target_bench.shared_group_warning(os.getpid())
    other = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        assert target_bench.shared_group_warning(other.pid) is None
    finally:
        other.kill()
        other.wait()
    assert target_bench.shared_group_warning(None) is None


def test_the_target_report_shows_the_warning():
    meta = {"target": "http://127.0.0.1:1", "account": "a", "sessions": 1, "loopback": True,
            "warning": "the target shares this harness's scheduler autogroup"}
    assert "**Warning:** the target shares" in target_bench.format_target_report(meta, {})


# ---- issue #6's targets ----------------------------------------------------------------------

def wrk(rps, p99_us=1000.0):
    return {"rps": rps, "lat_p50_us": 100.0, "lat_p99_us": p99_us}


def test_cpu_note_gives_the_cpu_ratio_and_warns_of_a_starved_server():
    busy = [{"cpu_us_per_req": 10.0, "cpu_util": 0.95}]
    starved = [{"cpu_us_per_req": 10.0, "cpu_util": 0.2}]
    nginx = [{"cpu_us_per_req": 5.0}]
    assert targets.cpu_note(busy, nginx, "nginx") == \
        "; CPU/request: nginx 5.0 ÷ myelin 10.0 µs = 0.50×"
    assert "only 20% busy" in targets.cpu_note(starved, nginx, "nginx")
    assert targets.cpu_note([{}], [{}], "nginx") == ""


def made_up_results():
    """Results shaped like run_bench.py's, with known medians."""
    whoami_rounds = [{"myelin": wrk(90), "nginx": wrk(100), "ratio": 0.90},
                     {"myelin": wrk(80), "nginx": wrk(100), "ratio": 0.80},
                     {"myelin": wrk(95), "nginx": wrk(100), "ratio": 0.95}]
    return {
        "whoami": {"pinned": {"rounds": whoami_rounds}, "shared": {"rounds": whoami_rounds}},
        "refresh": {"rounds": [{"myelin": {"rotations_per_s": 500.0},
                                "ceiling": {"rotations_per_s": 1000.0}, "ratio": 0.5}]},
        "refresh_pg": {"skipped": "PostgreSQL binaries not installed"},
        "login": {"error": "wrk failed"},
        "login_storm": {"rounds": [{"quiet": wrk(100, 2000.0), "storm": wrk(50, 5000.0)}]},
        "scale": {
            "default": {"idle": {"VmRSS": 16 * 1024}},
            "lazy": {"ready_s": 0.02},
            "rounds": [{"bytes_per_session": 424.0, "ratio": 0.95,
                        "big": {"ready_s": 7.0, "wrk": wrk(95)},
                        "small": {"ready_s": 0.1, "wrk": wrk(100)}}],
        },
    }


def test_target_rows_compare_each_median_with_its_bound():
    rows = {r["target"]: r for r in targets.target_rows(made_up_results())}
    assert len(rows) == 9
    whoami = rows["whoami ≥ 0.9× nginx, pinned"]
    assert whoami["met"] == "yes" and whoami["measured"].startswith("0.90×")  # median, bound met
    assert rows["refresh ≥ 0.6× raw storage rotation (SQLite)"]["met"] == "no"
    pg = rows["refresh ≥ 0.6× raw storage rotation (PostgreSQL)"]
    assert pg["met"] == "not measured" and "PostgreSQL binaries not installed" in pg["measured"]
    login = rows["login ≥ 0.85× argon2id ceiling (cores ÷ one verification)"]
    assert login["met"] == "not measured" and "failed: wrk failed" in login["measured"]
    storm = rows["whoami p99 during a login storm ≤ 3× quiet p99"]
    assert storm["met"] == "yes" and storm["measured"].startswith("2.5×")
    assert rows["idle RSS ≤ 16 MiB (default config)"]["met"] == "yes"  # 16.0 is within
    assert rows["≤ 300 bytes per live session in memory (1,000,000 cached)"]["met"] == "no"
    startup = rows["start-up ≤ 3 s with 1,000,000 sessions (default: lazy token cache)"]
    assert startup["met"] == "yes" and "7.00 s with every session cached" in startup["measured"]
    assert rows["whoami at 1,000,000 sessions ≥ 0.9× at 1,000 (pinned, all cached)"]["met"] == \
        "yes"


def test_target_rows_name_the_number_of_sessions_measured():
    results = made_up_results()
    results["scale"]["big_sessions"] = 100_001  # a --quick run
    names = [r["target"] for r in targets.target_rows(results)]
    assert "start-up ≤ 3 s with 100,000 sessions (default: lazy token cache)" in names
    assert not [n for n in names if "1,000,000" in n]


def test_target_rows_of_an_empty_run_are_all_not_measured():
    rows = targets.target_rows({})
    assert len(rows) == 9
    assert {r["met"] for r in rows} == {"not measured"}
    assert {r["measured"] for r in rows} == {"not run"}


def test_target_table_is_markdown_with_one_line_per_target():
    lines = targets.format_target_table(targets.target_rows(made_up_results()))
    assert lines[0] == "| target | measured | met? |"
    assert len(lines) == 2 + 9
    assert "| **yes** |" in lines[2] and all(line.count("|") == 4 for line in lines)


def test_target_report_notes_skipped_benchmarks_and_missing_ceilings():
    meta = {"target": "https://matrix.example.org", "versions": ["v1.11"],
            "account": "existing account (--target-user)", "sessions": 4, "loopback": False}
    results = {
        "versions": {"rounds": [{"target": dict(wrk(1000), ok_rps=900.0, requests=1000,
                                                err_status=100, errors=100)}]},
        "refresh": {"skipped": "the target's login gave no refresh_token"},
    }
    text = target_bench.format_target_report(meta, results)
    assert "https://matrix.example.org" in text
    assert "no nginx ceiling" in text
    # The rate counts 2xx answers only; the errors column gives the share of the rest.
    assert "| versions | GET /_matrix/client/versions | wrk -t2 -c64 | 900 req/s |" in text
    assert "| 100 (10 %) |" in text
    assert "skipped: the target's login gave no refresh_token" in text


# ---- --target against a real server ----------------------------------------------------------

def run_target(tmp_path, server, *extra, expect_rc=0):
    out = tmp_path / "REPORT-target.md"
    argv = [sys.executable, str(BENCH / "run_bench.py"), "--target", server.base, "--quick",
            "--rounds", "1", "--duration", "1", "--target-sessions", "2", "--output", str(out),
            *extra]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert p.returncode == expect_rc, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    if expect_rc != 0:
        return p, None, None
    raw = json.loads(out.with_suffix(".json").read_text())
    return p, out.read_text(), raw["results"]


def only_round(results, name):
    (rnd,) = results[name]["rounds"]
    return rnd["target"]


def test_target_registers_logs_in_and_runs_every_http_benchmark(tmp_path, server):
    p, report, results = run_target(tmp_path, server)
    assert "sends load" in p.stdout
    for name in ("versions", "whoami"):
        t = only_round(results, name)
        assert t["requests"] > 0 and t["errors"] == 0, (name, t)
        # The server is on loopback: nginx answered the same bytes in the same round.
        (rnd,) = results[name]["rounds"]
        assert rnd["nginx"]["requests"] > 0 and rnd["ratio"] > 0
    login = only_round(results, "login")
    assert login["ok"] > 0 and login["errors"] == 0
    refresh = only_round(results, "refresh")
    assert refresh["rotated"] > 0 and refresh["errors"] == 0 and refresh["no_token"] == 0
    register = only_round(results, "register")
    assert register["ok"] > 0 and register["errors"] == 0
    assert "# Homeserver benchmark" in report and server.base in report
    assert "| refresh | POST /refresh |" in report and "nginx" in report


def test_target_with_an_existing_account_does_not_register(tmp_path, server):
    account = register_ok(server)
    p, report, results = run_target(tmp_path, server, "--target-user", account.user_id,
                                    "--target-password", account.password, "--no-ceilings")
    assert "skipped" in results["register"]
    assert only_round(results, "whoami")["errors"] == 0
    assert only_round(results, "login")["ok"] > 0
    assert "nginx" not in json.dumps(results["versions"])
    assert account.password not in report and account.password not in p.stdout
    # The set-up's whoami sessions were logged out again.
    me = login_ok(server, account.user_id, account.password)
    devices = server.get("/_matrix/client/v3/devices",
                         headers={"Authorization": "Bearer " + me.access_token})
    assert devices.status_code == 200, devices.text
    ids = {d["device_id"] for d in devices.json()["devices"]}
    assert not {d for d in ids if d.startswith("BENCHW")}, ids


def test_target_completes_the_registration_token_stage(tmp_path, server_factory):
    server = server_factory(registration={"enabled": True, "requires_token": True})
    created = h.run_cli("admin", "registration-token", "create", "--token", "bench-token",
                        "--config", str(server.config_path), "--json")
    assert created.returncode == 0, created.stderr
    # Without the token the harness cannot register and says what to do.
    p, _, _ = run_target(tmp_path, server, "--no-ceilings", expect_rc=1)
    assert "--registration-token" in p.stderr
    _, _, results = run_target(tmp_path, server, "--no-ceilings", "--registration-token",
                               "bench-token")
    assert only_round(results, "register")["ok"] > 0
    assert only_round(results, "register")["errors"] == 0


def test_the_report_hides_the_password_and_the_registration_token():
    import run_bench
    assert run_bench.redact_argv(["--target", "http://x", "--target-password", "s3cret",
                                  "--registration-token=tok", "--quick"]) == \
        ["--target", "http://x", "--target-password", "***", "--registration-token=***",
         "--quick"]


def test_refresh_load_hands_its_live_tokens_to_the_next_run(tmp_path, server):
    # bench/profile.py runs refresh.lua three times (warm-up, probe, measured) on one set of
    # sessions: each run must start from the tokens the previous one left, not spent ones.
    user = register_ok(server, unique_name("lua"))
    tokens = tmp_path / "tokens.txt"
    lines = []
    for i in range(12):
        s = login_ok(server, user.user_id, user.password, device_id=f"L{i}",
                     refresh_token=True)
        lines.append(s.refresh_token + "\n")
    tokens.write_text("".join(lines))
    env = {"MYELIN_TOKENS": str(tokens), "MYELIN_TOKENS_OUT": str(tokens)}
    url = server.base + "/_matrix/client/v3/refresh"
    for run in range(2):
        r = rb.run_wrk(url, 1, 2, 1, "refresh.lua", env=env)
        assert r["rotated"] > 0 and r["err_status"] == 0 and r["pool_empty"] == 0, (run, r)
        left = tokens.read_text().split()
        # New tokens only. The sessions of the requests wrk had taken a token for when it
        # stopped are lost (2 to 3 a run here); refresh.lua needs at least as many tokens as
        # connections.
        assert 2 <= len(left) <= len(lines), (run, left)
        assert not set(left) & {ln.strip() for ln in lines}, (run, left)
        lines = [t + "\n" for t in left]
    # They are live.
    for t in lines:
        rotated = server.post("/_matrix/client/v3/refresh", json={"refresh_token": t.strip()})
        assert rotated.status_code == 200, show(rotated)
