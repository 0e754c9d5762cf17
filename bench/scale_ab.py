#!/usr/bin/env python3
"""Two myelin binaries side by side on the scale benchmark's warmed-cache rounds (1,000 vs
1,000,000 sessions cached: RSS per session, whoami req/s and CPU per request, start-up) and the
default-config idle RSS, interleaved round by round (order alternating). Uses run_bench.py's
helpers. Example:
    bench/scale_ab.py --before /tmp/main-myelin --after build/myelin --rounds 5 --out ab.json
--reuse DIR reuses the databases a previous run filled in DIR."""
import argparse, json, os, sys, tempfile, time, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--before", required=True, help="the baseline myelin binary")
ap.add_argument("--after", required=True, help="the myelin binary under test")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--out", default="scale_ab.json")
ap.add_argument("--big", type=int, default=1_000_000, help="sessions in the big database")
ap.add_argument("--reuse", default=None, help="scratch folder of an earlier run (databases)")
args = ap.parse_args()
BINS = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
rounds_n = args.rounds; out_path = args.out; big_n = args.big
ctx = rb.Ctx()
ctx.quick = False; ctx.rounds = rounds_n; ctx.duration = 10; ctx.warmup = 2
ctx.scale_small = 1000; ctx.scale_big = big_n; ctx.scale_sample = 1000
ctx.path = {"versions": "/_matrix/client/versions", "whoami": "/_matrix/client/v3/account/whoami"}
ctx.tmp = Path(args.reuse or tempfile.mkdtemp(prefix="myelin-scale-ab-"))
rb.MYELIN = BINS["after"]
rb.log(f"scratch {ctx.tmp}")
if args.reuse:
    ctx.session_dbs = {n: {"data": ctx.tmp / f"sessions-{n}", "tokens": ctx.tmp / f"sessions-{n}-tokens.txt",
                           "fill_s": 0, "db_mib": 0, "sample": 0} for n in (1000, big_n)}
small = rb.sessions_db(ctx, ctx.scale_small, ctx.scale_small)
big = rb.sessions_db(ctx, big_n, ctx.scale_sample)
m = rb.MODES["pinned"]
results = {"before": [], "after": []}

def huge_kib(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0

def one(binname, r):
    rb.MYELIN = BINS[binname]
    rnd = {"load_before": rb.loadavg()}
    # idle RSS, default config, small database
    my = rb.Myelin(ctx, f"ab-{binname}-default-{r}", small["data"], 0, defaults=True)
    try:
        rb.check_whoami(my.base, small["tokens"])
        rnd["idle_default"] = rb.settled_rss(my.server.pid, 2.0)
    finally:
        my.stop()
    order = ["small", "big"] if r % 2 == 0 else ["big", "small"]
    servers = {}
    try:
        for which in order:
            db = small if which == "small" else big
            srv = rb.Myelin(ctx, f"ab-{binname}-{which}-{r}", db["data"], m["threads"],
                            cpus=m["server_cpus"], start_timeout=300, warm=True)
            servers[which] = srv
            rb.check_whoami(srv.base, db["tokens"])
            rnd[which] = {"ready_s": srv.ready_s, "mem_start": rb.settled_rss(srv.server.pid),
                          "cpu_start_s": srv.server.cpu_seconds(), "huge_kib": huge_kib(srv.server.pid)}
        for which in order:
            db = small if which == "small" else big
            srv = servers[which]
            env = {"MYELIN_TOKENS": str(db["tokens"])}
            rb.run_wrk(srv.base + ctx.path["whoami"], 1, 64, ctx.warmup, "whoami.lua",
                       cpus=m["wrk_cpus"], env=env)
            rnd[which]["wrk"] = rb.run_wrk(srv.base + ctx.path["whoami"], m["wrk_threads"], 64,
                                           ctx.duration, "whoami.lua", cpus=m["wrk_cpus"],
                                           env=env, server=srv.server)
            time.sleep(1)
    finally:
        for srv in servers.values():
            srv.stop()
    a, b = rnd["small"], rnd["big"]
    rnd["ratio"] = b["wrk"]["rps"] / a["wrk"]["rps"]
    rnd["bytes_per_session"] = ((b["mem_start"]["VmRSS"] - a["mem_start"]["VmRSS"]) * 1024 /
                                (big_n - ctx.scale_small))
    rb.log("AB %s round %d: start-up big %.2fs (cpu %.2fs), RSS %.1f/%.1f MiB (%.0f B/session), "
           "whoami %.0f/%.0f ratio %.3f, cpu us/req %.2f/%.2f, idle default %.1f MiB, AnonHugePages big %d KiB (load %s)" % (
           binname, r + 1, b["ready_s"], b["cpu_start_s"], a["mem_start"]["VmRSS"] / 1024,
           b["mem_start"]["VmRSS"] / 1024, rnd["bytes_per_session"], a["wrk"]["rps"], b["wrk"]["rps"],
           rnd["ratio"], a["wrk"]["cpu_us_per_req"], b["wrk"]["cpu_us_per_req"],
           rnd["idle_default"]["VmRSS"] / 1024, b["huge_kib"], rnd["load_before"]))
    return rnd

try:
    for r in range(rounds_n):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for b in order:
            results[b].append(one(b, r))
            Path(out_path).write_text(json.dumps(results, indent=1, default=str))
finally:
    rb.stop_all()

def med(xs): return statistics.median(xs)
def lst(xs, f): return ", ".join(f % x for x in xs)
for b in ("before", "after"):
    R = results[b]
    if not R: continue
    bps = [x["bytes_per_session"] for x in R]; ratio = [x["ratio"] for x in R]
    up = [x["big"]["ready_s"] for x in R]
    cr = [x["small"]["wrk"]["cpu_us_per_req"] / x["big"]["wrk"]["cpu_us_per_req"] for x in R]
    print(b + ": cpu-per-request ratio (1k/1M) median %.3f (%s)" % (med(cr), lst(cr, "%.3f")))
    print(b + ": bytes/session median %.0f (%s); ratio median %.3f (%s); cpu us/req 1k %.2f 1M %.2f; "
          "rps 1k %.0f 1M %.0f; start-up 1M warm %.2fs (%s), cpu %.2fs; idle default RSS %.1f MiB" % (
          med(bps), lst(bps, "%.0f"), med(ratio), lst(ratio, "%.3f"),
          med([x["small"]["wrk"]["cpu_us_per_req"] for x in R]),
          med([x["big"]["wrk"]["cpu_us_per_req"] for x in R]),
          med([x["small"]["wrk"]["rps"] for x in R]), med([x["big"]["wrk"]["rps"] for x in R]),
          med(up), lst(up, "%.2f"), med([x["big"]["cpu_start_s"] for x in R]),
          med([x["idle_default"]["VmRSS"] for x in R]) / 1024))
