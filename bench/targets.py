"""Issue #6's targets (section 2) checked against the results of one bench/run_bench.py run.

Pure functions of the results dictionary that run_bench.py writes to raw.json: no I/O, so that
tests/integration/test_bench_report.py can check them on made-up results.

  target_rows(results) -> [{"target", "measured", "met"}]   one row per target; met is
                          "yes", "no" or "not measured" (benchmark not run, failed or skipped)
  format_target_table(rows) -> list of Markdown lines
"""

import statistics


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ok(results, name):
    res = results.get(name)
    return res is not None and "error" not in res and "skipped" not in res


def _row(target, measured, value, bound, at_least):
    """A row; `value` None means not measured."""
    if value is None:
        return {"target": target, "measured": measured or "not measured", "met": "not measured"}
    met = value >= bound if at_least else value <= bound
    return {"target": target, "measured": measured, "met": "yes" if met else "no"}


def _missing(target, why="not measured"):
    return {"target": target, "measured": why, "met": "not measured"}


def _why(results, name):
    res = results.get(name)
    if res is None:
        return "not run"
    if "error" in res:
        return "failed: " + str(res["error"])[:120]
    return "skipped: " + str(res.get("skipped"))


def cpu_note(server_runs, ceiling_runs, ceiling_name):
    """"; CPU/request: <ceiling> A ÷ myelin B µs = R×" (the ratio that holds still on a busy
    machine), plus a warning when the pinned server kept its core less than 80 % busy (then
    it waited for the machine, not for work, and the throughput ratio is unreliable)."""
    a = median(x.get("cpu_us_per_req") for x in server_runs)
    b = median(x.get("cpu_us_per_req") for x in ceiling_runs)
    note = ""
    if a and b:
        note = f"; CPU/request: {ceiling_name} {b:.1f} ÷ myelin {a:.1f} µs = {b / a:.2f}×"
    busy = median(x.get("cpu_util") for x in server_runs)
    if busy is not None and busy < 0.8:
        note += (f"; ⚠ the pinned server kept its core only {busy:.0%} busy (machine load): "
                 "the throughput ratio measures the machine more than the server")
    return note


def target_rows(results):
    rows = []

    # whoami >= 0.9x nginx, pinned
    t = "whoami ≥ 0.9× nginx, pinned"
    if _ok(results, "whoami"):
        rs = results["whoami"]["pinned"]["rounds"]
        v = median(x["ratio"] for x in rs)
        note = cpu_note([x["myelin"] for x in rs], [x["nginx"] for x in rs], "nginx")
        rows.append(_row(t, f"{v:.2f}× ({median(x['myelin']['rps'] for x in rs):,.0f} vs "
                            f"{median(x['nginx']['rps'] for x in rs):,.0f} req/s){note}",
                         v, 0.9, True))
    else:
        rows.append(_missing(t, _why(results, "whoami")))

    # refresh >= 0.6x the raw storage rotation, per backend
    for name, label in (("refresh", "SQLite"), ("refresh_pg", "PostgreSQL")):
        t = f"refresh ≥ 0.6× raw storage rotation ({label})"
        if _ok(results, name):
            rs = results[name]["rounds"]
            v = median(x["ratio"] for x in rs)
            server = median(x["myelin"]["rotations_per_s"] for x in rs)
            ceiling = median(x["ceiling"]["rotations_per_s"] for x in rs)
            rows.append(_row(t, f"{v:.2f}× ({server:,.0f} vs {ceiling:,.0f} rotations/s)", v,
                             0.6, True))
        else:
            rows.append(_missing(t, _why(results, name)))

    # login >= 0.85x the argon2id ceiling
    t = "login ≥ 0.85× argon2id ceiling (cores ÷ one verification)"
    if _ok(results, "login"):
        rs = results["login"]["rounds"]
        v = median(x["ratio"] for x in rs)
        rows.append(_row(t, f"{v:.2f}× ({median(x['myelin']['logins_per_s'] for x in rs):.1f} vs "
                            f"{median(x['ceiling']['logins_per_s'] for x in rs):.1f} logins/s)",
                         v, 0.85, True))
    else:
        rows.append(_missing(t, _why(results, "login")))

    # whoami p99 during a login storm <= 3x quiet
    t = "whoami p99 during a login storm ≤ 3× quiet p99"
    if _ok(results, "login_storm"):
        rs = results["login_storm"]["rounds"]
        v = median(x["storm"]["lat_p99_us"] / x["quiet"]["lat_p99_us"] for x in rs
                   if x["quiet"]["lat_p99_us"])
        q = median(x["quiet"]["lat_p99_us"] for x in rs)
        s = median(x["storm"]["lat_p99_us"] for x in rs)
        rows.append(_row(t, f"{v:.1f}× ({s / 1000:.2f} vs {q / 1000:.2f} ms)"
                         if v is not None else None, v, 3.0, False))
    else:
        rows.append(_missing(t, _why(results, "login_storm")))

    scale_ok = _ok(results, "scale")
    res = results.get("scale", {})
    # The 1,000,000 sessions (--quick fills 100,000: the label says what was measured).
    big = f"{res.get('big_sessions', 1_000_001) - 1:,}" if scale_ok else "1,000,000"

    t = "idle RSS ≤ 16 MiB (default config)"
    if scale_ok:
        v = res["default"]["idle"]["VmRSS"] / 1024
        rows.append(_row(t, f"{v:.1f} MiB", v, 16.0, False))
    else:
        rows.append(_missing(t, _why(results, "scale")))

    t = f"≤ 300 bytes per live session in memory ({big} cached)"
    if scale_ok and res.get("rounds"):
        v = median(x["bytes_per_session"] for x in res["rounds"])
        rows.append(_row(t, f"{v:,.0f} B", v, 300, False))
    else:
        rows.append(_missing(t, _why(results, "scale")))

    t = f"start-up ≤ 3 s with {big} sessions (default: lazy token cache)"
    if scale_ok:
        v = res["lazy"]["ready_s"]
        warm = median(x["big"]["ready_s"] for x in res.get("rounds", []))
        extra = f"; {warm:.2f} s with every session cached at start-up" if warm is not None else ""
        rows.append(_row(t, f"{v:.2f} s{extra}", v, 3.0, False))
    else:
        rows.append(_missing(t, _why(results, "scale")))

    t = f"whoami at {big} sessions ≥ 0.9× at 1,000 (pinned, all cached)"
    if scale_ok and res.get("rounds"):
        rs = res["rounds"]
        v = median(x["ratio"] for x in rs)
        note = cpu_note([x["big"]["wrk"] for x in rs], [x["small"]["wrk"] for x in rs],
                        "1,000 sessions")
        rows.append(_row(t, f"{v:.2f}× ({median(x['big']['wrk']['rps'] for x in rs):,.0f} vs "
                            f"{median(x['small']['wrk']['rps'] for x in rs):,.0f} req/s){note}",
                         v, 0.9, True))
    else:
        rows.append(_missing(t, _why(results, "scale")))
    return rows


def format_target_table(rows):
    lines = ["| target | measured | met? |", "| --- | --- | --- |"]
    for r in rows:
        met = f"**{r['met']}**" if r["met"] in ("yes", "no") else r["met"]
        lines.append(f"| {r['target']} | {r['measured']} | {met} |")
    return lines
