#!/usr/bin/python3
"""Login, two builds side by side: A/B rounds interleaved on the same machine.

Per round and build (the order alternates between rounds):
  login   the build's server (OWASP argon2id, hashing pool = cores), wrk -t2 -c8 POST /login for
          DURATION s: logins/s and server CPU per login, user and kernel
  ceiling the build's own BM_LoginCeilingArgon2idVerifyOwasp (its server's verification path) on
          one and two threads; ceiling = cores / one verification's wall time. If the build has
          BM_LoginCeilingArgon2idVerifyOwaspNoArena it is measured too.
  storm   bench/login_storm.py's round: whoami p99 quiet, then inside 200 login connections
Usage: bench/login_ab.py --a NAME=BUILD_DIR --b NAME=BUILD_DIR [--rounds 5] [--duration 10]
                         [--output FILE]   (default bench/results/login_ab.json)
"""
import argparse, json, shutil, sys, tempfile, time, types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402
import login_storm as ls  # noqa: E402

SUMMARIZE = len(sys.argv) == 3 and sys.argv[1] == "--summarize"
ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--a", required=True)
ap.add_argument("--b", required=True)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--duration", type=int, default=10)
ap.add_argument("--output", default=str(rb.RESULTS / "login_ab.json"))
args = ap.parse_args(["--a", "x=.", "--b", "y=."] if SUMMARIZE else None)
BUILDS = dict((x.split("=", 1)[0], Path(x.split("=", 1)[1])) for x in (args.a, args.b))
ROUNDS = args.rounds
DUR = args.duration
OUT = Path(args.output)
OUT.parent.mkdir(parents=True, exist_ok=True)

def micro(build, name):
    rb.MICRO = BUILDS[build] / "bench" / "myelin_micro_bench"
    out = {}
    for t in (1, 2):
        b = rb.run_micro(f"^{name}/real_time/threads:{t}$", 3)[0]
        out[f"t{t}_ms"] = b["real_time"]; out[f"t{t}_cpu_ms"] = b["cpu_time"]
        out[f"t{t}_per_s"] = b["items_per_second"]
    out["ceiling"] = rb.CORES / (out["t1_ms"] / 1e3)
    return out

def login(build, tmp, r):
    rb.MYELIN = BUILDS[build] / "myelin"
    ctx = types.SimpleNamespace(tmp=tmp)
    my = rb.Myelin(ctx, f"login-{build}-{r}", tmp / f"login-{build}-{r}", 0, argon2=(19456, 2), hashing_threads=0)
    try:
        rb.register(my.base, "bench", rb.PASSWORD)
        rb.login(my.base, "bench", rb.PASSWORD, "WRKLOGIN", False)
        env = {"MYELIN_USER": "bench", "MYELIN_PASSWORD": rb.PASSWORD}
        w = rb.run_wrk(my.base, 2, 8, DUR, "login.lua", env=env, server=my.server)
    finally:
        my.stop()
    ok = w["ok"]
    return {"logins_per_s": ok / (w["duration_us"] / 1e6), "err_status": w["err_status"],
            "cpu_us": w["cpu_s"] * 1e6 / ok, "user_us": w["cpu_user_s"] * 1e6 / ok,
            "kernel_us": w["cpu_kernel_s"] * 1e6 / ok, "cpu_util": w["cpu_util"],
            "p50_ms": w["lat_p50_us"] / 1e3, "p99_ms": w["lat_p99_us"] / 1e3}

def storm(build, tmp, r):
    rb.MYELIN = BUILDS[build] / "myelin"
    args = types.SimpleNamespace(argon2=(19456, 2), hashing_threads=0, hashing_queue=0)
    st = tmp / f"storm-{build}-{r}"; st.mkdir()
    server, base = ls.start_server(st, args)
    try:
        rb.register(base, "reader", rb.PASSWORD); rb.register(base, "storm", rb.PASSWORD)
        sessions = rb.login_many(base, "reader", [f"R{i:05d}" for i in range(200)], False)
        tf = st / "tokens.txt"; tf.write_text("".join(s["access_token"] + "\n" for s in sessions))
        ls.whoami_run(base, tf, 2, server)
        q = ls.whoami_run(base, tf, DUR, server)
        with ThreadPoolExecutor(max_workers=1) as pool:
            f = pool.submit(ls.login_run, base, 200, DUR + 4, "storm")
            time.sleep(2)
            s = ls.whoami_run(base, tf, DUR, server)
            lg = f.result()
    finally:
        server.stop()
    secs = lg["duration_us"] / 1e6
    return {"quiet_p99_ms": q["lat_p99_us"] / 1e3, "storm_p99_ms": s["lat_p99_us"] / 1e3,
            "ratio": s["lat_p99_us"] / q["lat_p99_us"], "quiet_rps": q["rps"], "storm_rps": s["rps"],
            "admitted_per_s": lg["ok"] / secs, "shed_per_s": lg["err_status"] / secs,
            "login_p50_ms": lg["lat_p50_us"] / 1e3, "login_p99_ms": lg["lat_p99_us"] / 1e3}

def summarize(results):
    """Medians (min-max) over the rounds, per build; ratio = logins/s / the same round's ceiling."""
    def mr(xs, f):
        xs = sorted(xs)
        return f"{f.format(xs[len(xs) // 2] if len(xs) % 2 else sum(xs[len(xs) // 2 - 1:len(xs) // 2 + 1]) / 2)} ({f.format(xs[0])}–{f.format(xs[-1])})"
    rs = results["rounds"]
    lines = []
    for b in rs[0]["login"]:
        L = [r["login"][b] for r in rs]
        M = [r["micro"][b] for r in rs]
        S = [r["storm"][b] for r in rs]
        lines.append(f"{b}: logins/s {mr([x['logins_per_s'] for x in L], '{:.1f}')}; "
                     f"ceiling {mr([x['ceiling'] for x in M], '{:.1f}')}/s "
                     f"(one verify {mr([x['t1_ms'] for x in M], '{:.2f}')} ms wall, "
                     f"{mr([x['t1_cpu_ms'] for x in M], '{:.2f}')} ms CPU; two threads "
                     f"{mr([x['t2_per_s'] for x in M], '{:.1f}')}/s); "
                     f"ratio {mr([r['login'][b]['logins_per_s'] / r['micro'][b]['ceiling'] for r in rs], '{:.2f}')}; "
                     f"CPU µs/login {mr([x['cpu_us'] for x in L], '{:,.0f}')} = user "
                     f"{mr([x['user_us'] for x in L], '{:,.0f}')} + kernel "
                     f"{mr([x['kernel_us'] for x in L], '{:,.0f}')}; cores busy "
                     f"{mr([x['cpu_util'] for x in L], '{:.2f}')}; storm whoami p99 "
                     f"{mr([x['storm_p99_ms'] for x in S], '{:.2f}')} ms vs quiet "
                     f"{mr([x['quiet_p99_ms'] for x in S], '{:.2f}')} ms, ratio "
                     f"{mr([x['ratio'] for x in S], '{:.2f}')}; storm logins admitted "
                     f"{mr([x['admitted_per_s'] for x in S], '{:.1f}')}/s, shed "
                     f"{mr([x['shed_per_s'] for x in S], '{:.1f}')}/s")
        extra = [r["micro"].get(b + "_no_arena") for r in rs]
        if all(extra):
            lines.append(f"{b} without the arena: ceiling {mr([x['ceiling'] for x in extra], '{:.1f}')}/s "
                         f"(one verify {mr([x['t1_ms'] for x in extra], '{:.2f}')} ms wall, "
                         f"{mr([x['t1_cpu_ms'] for x in extra], '{:.2f}')} ms CPU)")
    lines.append("load average per round: " + ", ".join(r["load"].split()[0] for r in rs))
    return "\n".join(lines)


if len(sys.argv) == 3 and sys.argv[1] == "--summarize":
    print(summarize(json.loads(Path(sys.argv[2]).read_text())))
    sys.exit(0)

results = {"rounds": []}
tmp = Path(tempfile.mkdtemp(prefix="myelin-login-ab-"))
try:
    for r in range(ROUNDS):
        names = list(BUILDS)
        order = names if r % 2 == 0 else names[::-1]
        rnd = {"load": rb.loadavg(), "order": order, "login": {}, "micro": {}, "storm": {}}
        for b in order:
            rnd["login"][b] = login(b, tmp, r); time.sleep(1)
        for b in order:
            rnd["micro"][b] = micro(b, "BM_LoginCeilingArgon2idVerifyOwasp")
        for b in order:
            try:
                rnd["micro"][b + "_no_arena"] = micro(b, "BM_LoginCeilingArgon2idVerifyOwaspNoArena")
            except (RuntimeError, ValueError):
                pass  # a build from before the arena has no such benchmark
        for b in order:
            rnd["storm"][b] = storm(b, tmp, r); time.sleep(1)
        rnd["load_after"] = rb.loadavg()
        results["rounds"].append(rnd)
        OUT.write_text(json.dumps(results, indent=1))
        rb.log(f"round {r+1}: " + json.dumps({b: (round(rnd['login'][b]['logins_per_s'],1), round(rnd['micro'][b]['ceiling'],1), round(rnd['storm'][b]['ratio'],2)) for b in order}))
finally:
    rb.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)
print(summarize(results))
