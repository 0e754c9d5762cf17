#!/usr/bin/python3
"""Does a login storm starve authenticated requests? whoami latency, quiet vs during a storm.

One myelin server (argon2id at the OWASP default unless told otherwise, hashing pool and queue at
their defaults, rate limits OFF so that what is measured is the hashing pool's shedding, not the
per-IP limiter). Each round runs, back to back:
  quiet  wrk GET /account/whoami (a pool of real access tokens), WHOAMI_CONNS connections
  storm  the same whoami load while another wrk keeps LOGINS connections busy with POST /login
         (right password, so every request that is admitted costs one argon2id verification;
         after a 429/503 a connection waits the Retry-After it was given, as clients do:
         bench/load/login_storm.lua)
and reports whoami p50/p99/p99.9 and throughput side by side, plus what the storm got: logins/s
admitted, requests shed (503 + Retry-After, counted by wrk as non-2xx) and login latency.

Everything runs on 127.0.0.1; wrk runs are bounded (-d) and the server started here is stopped
here (it reuses bench/run_bench.py's process helpers). Writes bench/results/login_storm.json.
Usage: bench/login_storm.py [--rounds N] [--duration S] [--logins N] [--hashing-threads N]
                            [--hashing-queue N] [--argon2 KIB,ITER] [--output FILE]
Environment: MYELIN_BUILD (default build/), MYELIN_BENCH_TMP (parent of the scratch folder).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402  (process helpers, wrk runner, clients)

WHOAMI_CONNS = 16


def ms(us):
    return f"{us / 1000:.2f} ms"


def start_server(tmp, args):
    port = rb.free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    conf = tmp / "storm.toml"
    kib, iters = args.argon2
    conf.write_text(f"""# written by bench/login_storm.py
server_name = "localhost"
public_baseurl = "{base}/"
[listen]
address = "127.0.0.1"
port = {port}
threads = 0
[database]
url = "sqlite:{data / 'homeserver.db'}"
[registration]
enabled = true
[passwords]
argon2_memory_kib = {kib}
argon2_iterations = {iters}
hashing_threads = {args.hashing_threads}
hashing_queue = {args.hashing_queue}
[limits]
max_connections = 20000
[rate_limits]
enabled = false
[metrics]
enabled = false
[logging]
level = "warn"
access_log = false
""")
    server = rb.Server("myelin[storm]", [str(rb.MYELIN), "serve", "--config", str(conf)],
                       tmp / "storm.log")
    rb.wait_http(server, base + "/_matrix/client/versions")
    return server, base


def whoami_run(base, token_file, duration, server):
    return rb.run_wrk(base, 1, WHOAMI_CONNS, duration, "whoami.lua",
                      env={"MYELIN_TOKENS": str(token_file)}, server=server)


def login_run(base, conns, duration, user):
    return rb.run_wrk(base, 1, conns, duration, "login_storm.lua",
                      env={"MYELIN_USER": user, "MYELIN_PASSWORD": rb.PASSWORD})


def run_storm(tmp, args):
    """The rounds (quiet, then storm) in folder `tmp` with the settings of `args` (rounds,
    duration, logins, sessions, hashing_threads, hashing_queue, argon2 as a (KiB, iterations)
    tuple); returns (rounds, summary). The caller stops the server (rb.stop_all()).
    Also run by bench/run_bench.py (benchmark login_storm)."""
    rounds = []
    server, base = start_server(tmp, args)
    rb.register(base, "reader", rb.PASSWORD)
    rb.register(base, "storm", rb.PASSWORD)
    rb.log(f"login_storm: logging in {args.sessions} whoami sessions")
    sessions = rb.login_many(base, "reader", [f"R{i:05d}" for i in range(args.sessions)], False)
    token_file = tmp / "tokens.txt"
    token_file.write_text("".join(s["access_token"] + "\n" for s in sessions))
    whoami_run(base, token_file, 2, server)  # warm-up
    for r in range(args.rounds):
        rnd = {"load_before": rb.loadavg()}
        rb.log(f"login_storm round {r + 1}/{args.rounds}: quiet")
        rnd["quiet"] = whoami_run(base, token_file, args.duration, server)
        rb.log(f"login_storm round {r + 1}/{args.rounds}: storm of {args.logins} logins")
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The storm starts first and ends last: whoami runs entirely inside it.
            storm = pool.submit(login_run, base, args.logins, args.duration + 4, "storm")
            time.sleep(2)
            rnd["storm"] = whoami_run(base, token_file, args.duration, server)
            rnd["logins"] = storm.result()
        rnd["p99_ratio"] = (rnd["storm"]["lat_p99_us"] / rnd["quiet"]["lat_p99_us"]
                            if rnd["quiet"]["lat_p99_us"] else None)
        rb.log(f"login_storm round {r + 1}: whoami p99 quiet "
               f"{rnd['quiet']['lat_p99_us'] / 1000:.2f} ms, storm "
               f"{rnd['storm']['lat_p99_us'] / 1000:.2f} ms; logins "
               f"{rnd['logins']['ok'] / (rnd['logins']['duration_us'] / 1e6):.0f}/s admitted")
        rounds.append(rnd)
        time.sleep(1)
    return rounds, summarize(rounds)


def summarize(rounds):
    """Medians over the rounds of whoami quiet / during the storm and of what the storm got."""
    def med(key, field):
        return statistics.median(rnd[key][field] for rnd in rounds)

    return {
        "whoami_quiet": {f: med("quiet", f) for f in
                         ("rps", "lat_p50_us", "lat_p99_us", "lat_p99_9_us", "errors")},
        "whoami_storm": {f: med("storm", f) for f in
                         ("rps", "lat_p50_us", "lat_p99_us", "lat_p99_9_us", "errors")},
        "storm": {
            "logins_ok_per_s": statistics.median(
                rnd["logins"]["ok"] / (rnd["logins"]["duration_us"] / 1e6) for rnd in rounds),
            "shed_per_s": statistics.median(
                rnd["logins"]["err_status"] / (rnd["logins"]["duration_us"] / 1e6)
                for rnd in rounds),
            "login_p50_us": med("logins", "lat_p50_us"),
            "login_p99_us": med("logins", "lat_p99_us"),
            "socket_errors": med("logins", "errors") - med("logins", "err_status"),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per whoami run")
    ap.add_argument("--logins", type=int, default=200, help="concurrent login connections")
    ap.add_argument("--sessions", type=int, default=200, help="access tokens for whoami")
    ap.add_argument("--hashing-threads", type=int, default=0, help="0: one per core")
    ap.add_argument("--hashing-queue", type=int, default=0,
                    help="0: the server default (8 per hashing thread)")
    ap.add_argument("--argon2", default="19456,2", help="memory KiB,iterations")
    ap.add_argument("--output", default="login_storm.json", help="file name in bench/results")
    args = ap.parse_args()
    args.argon2 = tuple(int(x) for x in args.argon2.split(","))
    if not rb.MYELIN.exists():
        sys.exit(f"{rb.MYELIN} not found: build it (Release) or set MYELIN_BUILD")

    tmp = Path(tempfile.mkdtemp(prefix="myelin-storm-", dir=os.environ.get("MYELIN_BENCH_TMP")))
    try:
        rounds, summary = run_storm(tmp, args)
    finally:
        rb.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    out = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": rb.CORES, "kernel": platform.release()},
        "settings": {"rounds": args.rounds, "duration_s": args.duration,
                     "login_connections": args.logins, "whoami_connections": WHOAMI_CONNS,
                     "whoami_tokens": args.sessions, "argon2_kib_iter": list(args.argon2),
                     "hashing_threads": args.hashing_threads or rb.CORES,
                     "hashing_queue": args.hashing_queue},
        "summary": summary,
        "rounds": rounds,
    }
    rb.RESULTS.mkdir(exist_ok=True)
    (rb.RESULTS / args.output).write_text(json.dumps(out, indent=2) + "\n")

    q, s, st = summary["whoami_quiet"], summary["whoami_storm"], summary["storm"]
    print()
    print(f"whoami ({WHOAMI_CONNS} connections, median of {args.rounds} rounds of "
          f"{args.duration}s)   quiet        during {args.logins} concurrent logins")
    print(f"  requests/s                          {q['rps']:>10,.0f}   {s['rps']:>10,.0f}")
    for label, f in (("p50", "lat_p50_us"), ("p99", "lat_p99_us"), ("p99.9", "lat_p99_9_us")):
        print(f"  {label:<6} latency                      {ms(q[f]):>10}   {ms(s[f]):>10}")
    print(f"  errors                              {q['errors']:>10,.0f}   {s['errors']:>10,.0f}")
    print(f"storm: {st['logins_ok_per_s']:,.0f} logins/s admitted, {st['shed_per_s']:,.0f}/s shed "
          f"(503 + Retry-After), login p50 {ms(st['login_p50_us'])}, "
          f"p99 {ms(st['login_p99_us'])}, socket errors {st['socket_errors']:,.0f}")


if __name__ == "__main__":
    main()
