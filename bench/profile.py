#!/usr/bin/python3
"""Profiles one request type of a Release myelin under load: perf (sampling) or callgrind
(instructions per request, deterministic: the figure this VM's drifting timings cannot give).

  bench/profile.py perf      [--what whoami|versions|refresh] [--duration S]
  bench/profile.py callgrind [--what whoami|versions|refresh] [--requests N]

perf: myelin pinned to core 0 (1 network thread), wrk -t1 -c64 on core 1 for --duration s, and
`perf record -e cpu-clock -g` on the server's pid meanwhile (cpu-clock: this VM has no hardware
counters). Prints the top of `perf report` and leaves the data file.
callgrind: myelin under `valgrind --tool=callgrind --instr-atstart=no` (set-up and warm-up run
uninstrumented, fast); then instrumentation is switched on (`callgrind_control -i on PID`), wrk
-t1 -c1 sends about N requests (-d from a probe's rate), the counters are dumped
(`callgrind_control -d PID`), and the program total of instructions (Ir) divided by the requests
answered is printed with the top functions.

whoami uses 1,000 sessions (100 under callgrind; cheap argon2id for the set-up), refresh 256. Everything on
127.0.0.1; the server is stopped at the end; files go to bench/results/profile-*.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402

PATHS = {"whoami": "/_matrix/client/v3/account/whoami", "versions": "/_matrix/client/versions",
         "refresh": "/_matrix/client/v3/refresh"}
SCRIPTS = {"whoami": "whoami.lua", "versions": "report.lua", "refresh": "refresh.lua"}


def set_up(ctx, my, what):
    """Registers, logs in sessions, writes the token file; wrk's env for `what`."""
    if what == "versions":
        return {}
    rb.register(my.base, "bench", rb.PASSWORD)
    n = ctx.sessions if what == "whoami" else 256
    logins = rb.login_many(my.base, "bench", [f"P{i:05d}" for i in range(n)],
                           refresh=what == "refresh")
    key = "access_token" if what == "whoami" else "refresh_token"
    tokens = ctx.tmp / "tokens.txt"
    tokens.write_text("".join(x[key] + "\n" for x in logins))
    # Each wrk run (warm-up, probe, measured) spends the refresh tokens it read: refresh.lua
    # writes the live ones back for the next run, which would otherwise present spent ones.
    return {"MYELIN_TOKENS": str(tokens), "MYELIN_TOKENS_OUT": str(tokens)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tool", choices=("perf", "callgrind"))
    ap.add_argument("--what", choices=tuple(PATHS), default="whoami")
    ap.add_argument("--duration", type=int, default=10, help="perf: seconds of load")
    ap.add_argument("--requests", type=int, default=3000, help="callgrind: requests measured")
    args = ap.parse_args()
    import tempfile
    ctx = rb.Ctx()
    ctx.tmp = Path(tempfile.mkdtemp(prefix="myelin-profile-"))
    ctx.sessions = 1000 if args.tool == "perf" else 100  # logins under valgrind are slow
    rb.RESULTS.mkdir(parents=True, exist_ok=True)
    out = rb.RESULTS / f"profile-{args.what}.{'perf.data' if args.tool == 'perf' else 'callgrind'}"
    try:
        if args.tool == "perf":
            my = rb.Myelin(ctx, "profile", ctx.tmp / "data", 1, cpus="0")
            env = set_up(ctx, my, args.what)
            url = my.base + PATHS[args.what]
            rb.run_wrk(url, 1, 64, 2, SCRIPTS[args.what], cpus="1", env=env)  # warm-up
            rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-g",
                                    "-p", str(my.server.pid), "-o", str(out), "--",
                                    "sleep", str(args.duration + 1)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            w = rb.run_wrk(url, 1, 64, args.duration, SCRIPTS[args.what], cpus="1", env=env,
                           server=my.server)
            rec.wait(timeout=args.duration + 30)
            print(f"{args.what}: {w['rps']:,.0f} req/s, {w['cpu_us_per_req']:.1f} µs CPU/request "
                  f"(non-2xx {w['err_status']})")
            report = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-children",
                                     "--sort", "dso,symbol", "-g", "none", "--percent-limit",
                                     "0.7"], capture_output=True, text=True, timeout=300)
            for ln in report.stdout.splitlines():
                if ln and ln[0] != "#":  # perf pads the symbol column and adds "- -" columns
                    print(re.sub(r"[\s-]+$", "", ln)[:160])
            print(f"\nperf data: {out}  (perf report -i {out})")
        else:
            ctx.tmp.joinpath("data").mkdir()
            my = rb.Myelin.__new__(rb.Myelin)  # started below under valgrind, same config
            my.db_url = f"sqlite:{ctx.tmp / 'data' / 'homeserver.db'}"
            my.port = rb.free_port()
            my.base = f"http://127.0.0.1:{my.port}"
            conf = ctx.tmp / "profile.toml"
            my._write_bench_conf(conf, ctx.tmp / "data", 1, (1024, 1), 1, "")
            my.server = rb.Server("myelin[callgrind]",
                                  ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                   f"--callgrind-out-file={out}", str(rb.MYELIN), "serve",
                                   "--config", str(conf)], ctx.tmp / "profile.log")
            rb.wait_http(my.server, my.base + PATHS["versions"], timeout=120)
            env = set_up(ctx, my, args.what)
            url = my.base + PATHS[args.what]
            rb.run_wrk(url, 1, 1, 2, SCRIPTS[args.what], env=env)  # warm-up, not collected
            probe = rb.run_wrk(url, 1, 1, 2, SCRIPTS[args.what], env=env)
            secs = max(1, round(args.requests / max(probe["rps"], 1)))
            for old in out.parent.glob(out.name + "*"):
                old.unlink()
            # Instrumentation on, the measured requests, dump: the dump holds only them (and
            # whatever the server's background threads did meanwhile: next to nothing).
            subprocess.run(["callgrind_control", "-i", "on", str(my.server.pid)], check=True,
                           capture_output=True, timeout=60)
            w = rb.run_wrk(url, 1, 1, secs, SCRIPTS[args.what], env=env)
            subprocess.run(["callgrind_control", "-d", str(my.server.pid)], check=True,
                           capture_output=True, timeout=120)
            subprocess.run(["callgrind_control", "-i", "off", str(my.server.pid)],
                           capture_output=True, timeout=60)
            dumps = sorted(out.parent.glob(out.name + "*"), key=lambda p: p.stat().st_mtime)
            ann = subprocess.run(["callgrind_annotate", str(dumps[-1])], capture_output=True,
                                 text=True, timeout=300).stdout
            total = re.search(r"^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", ann, re.M) or \
                re.search(r"^([\d,]+)\s+PROGRAM TOTALS", ann, re.M)
            ir = int(total.group(1).replace(",", "")) if total else None
            print(f"{args.what}: {w['requests']:,} requests answered under callgrind "
                  f"(non-2xx {w['err_status']}); "
                  + (f"{ir:,} instructions, {ir / w['requests']:,.0f} per request"
                     if ir and w["requests"] else "no program total found"))
            print("\n".join(ann.splitlines()[:60]))
            print(f"\ncallgrind data: {dumps[-1]}  (callgrind_annotate {dumps[-1]})")
    finally:
        rb.stop_all()
        import shutil
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
