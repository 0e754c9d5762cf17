"""`bench/run_bench.py --target URL`: the HTTP benchmarks against any Matrix homeserver.

This SENDS LOAD to URL (wrk at full speed, for --duration seconds per run, several runs) and, if
its registration is open, creates accounts on it (bench_<random>_<n>). Point it only at a server
you run or may load-test. Nothing here is specific to Myelin: it speaks the standard
client-server API, so Synapse, Conduit, Dendrite... can be put beside Myelin on the same machine.

Set-up: registers one account (user-interactive auth with m.login.dummy, and
m.login.registration_token when --registration-token is given), or uses --target-user and
--target-password; then logs in a few sessions (honouring 429 retry_after_ms, so a server with
login rate limits is slow to set up: lift them for a fair comparison).

Benchmarks (each ROUNDS rounds of DURATION s, wrk -t2 unless said):
  versions  GET /_matrix/client/versions                                  wrk -c64
  whoami    GET /account/whoami over the sessions' access tokens           wrk -c64
  login     POST /login, m.login.password, one device id                  wrk -c8
  refresh   POST /refresh, rotations/s (when login offers refresh tokens) wrk -t1 -c<sessions/2>
  register  POST /register (UIA), registrations/s from 8 Python threads  (when registration is open)
Ceilings: when URL is on this machine (loopback), nginx answering the same bytes as the target's
versions and whoami is measured in the same round (the side-by-side ratio); the argon2id and
storage micro-benchmarks, RSS and server CPU need Myelin's internals and are skipped, except
that --target-pid PID (a local server's process) adds server CPU µs/request and RSS.

Pure parts (tested in tests/integration/test_bench_report.py): choose_flow, next_stage,
auth_for, format_target_report.
"""

import json
import secrets
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests

SUPPORTED_STAGES = ("m.login.dummy", "m.login.registration_token")
MAX_RATE_LIMIT_WAIT_S = 120.0  # per request: the longest a set-up call waits out 429s


class MatrixError(RuntimeError):
    def __init__(self, what, status, body):
        self.status = status
        self.body = body
        self.errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{what}: HTTP {status} {json.dumps(body)[:300]}")


# ---- user-interactive authentication (pure) ----------------------------------------------------

def choose_flow(flows, have_token):
    """The stages of the first UIA flow this client can complete (only m.login.dummy, and
    m.login.registration_token when it has a token), or None. `flows` is the 401 body's list of
    {"stages": [...]}."""
    usable = set(SUPPORTED_STAGES) if have_token else {"m.login.dummy"}
    for flow in flows or []:
        stages = flow.get("stages", []) if isinstance(flow, dict) else []
        if all(stage in usable for stage in stages):
            return list(stages)
    return None


def next_stage(flow, completed):
    """The first stage of `flow` not in `completed` (the 401 body's list), or None."""
    done = list(completed or [])
    for stage in flow:
        if stage in done:
            done.remove(stage)
        else:
            return stage
    return None


def auth_for(stage, session, registration_token=None):
    """The `auth` object that completes `stage` of the UIA `session`."""
    auth = {"type": stage}
    if session is not None:
        auth["session"] = session
    if stage == "m.login.registration_token":
        if not registration_token:
            raise ValueError("m.login.registration_token needs --registration-token")
        auth["token"] = registration_token
    return auth


def is_loopback(url):
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


# ---- the client --------------------------------------------------------------------------------

class MatrixClient:
    """A minimal client-server API client over one requests.Session (not thread-safe: one per
    thread). Every call that gets 429 waits the retry_after_ms the server asks for (at most
    MAX_RATE_LIMIT_WAIT_S per call in all) and tries again, unless wait_rate_limits is False."""

    def __init__(self, base, timeout=30.0, wait_rate_limits=True):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.wait_rate_limits = wait_rate_limits
        self.http = requests.Session()

    def _call(self, method, path, body=None, token=None):
        headers = {"Authorization": "Bearer " + token} if token else {}
        waited = 0.0
        while True:
            r = self.http.request(method, self.base + path, json=body, headers=headers,
                                  timeout=self.timeout)
            try:
                data = r.json()
            except ValueError:
                data = {"raw": r.text[:200]}
            if r.status_code == 429 and self.wait_rate_limits and waited < MAX_RATE_LIMIT_WAIT_S:
                after = data.get("retry_after_ms") if isinstance(data, dict) else None
                if after is None:
                    after = float(r.headers.get("Retry-After", "1")) * 1000
                pause = min(max(after / 1000.0, 0.05), MAX_RATE_LIMIT_WAIT_S - waited)
                time.sleep(pause)
                waited += pause
                continue
            return r.status_code, data

    def versions(self):
        status, data = self._call("GET", "/_matrix/client/versions")
        if status != 200:
            raise MatrixError("GET /versions", status, data)
        return data

    def login_types(self):
        status, data = self._call("GET", "/_matrix/client/v3/login")
        if status != 200:
            raise MatrixError("GET /login", status, data)
        return [f.get("type") for f in data.get("flows", [])]

    def register(self, user, password, registration_token=None, device_id=None):
        """Registers `user` through user-interactive auth; the 200 body (access_token...)."""
        body = {"username": user, "password": password,
                "initial_device_display_name": "myelin-bench"}
        if device_id:
            body["device_id"] = device_id
        for _ in range(8):  # one request per stage, and the first without auth
            status, data = self._call("POST", "/_matrix/client/v3/register", body)
            if status == 200:
                return data
            if status == 401 and isinstance(data, dict) and "flows" in data:
                flow = choose_flow(data["flows"], registration_token is not None)
                if flow is None:
                    raise MatrixError("register: no flow of only " +
                                      ", ".join(SUPPORTED_STAGES), status, data)
                stage = next_stage(flow, data.get("completed"))
                if stage is None:
                    raise MatrixError("register: every stage done, still 401", status, data)
                body["auth"] = auth_for(stage, data.get("session"), registration_token)
                continue
            raise MatrixError(f"register {user}", status, data)
        raise RuntimeError(f"register {user}: too many UIA steps")

    def login(self, user, password, device_id=None, refresh=False):
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                "password": password, "initial_device_display_name": "myelin-bench"}
        if device_id:
            body["device_id"] = device_id
        if refresh:
            body["refresh_token"] = True
        status, data = self._call("POST", "/_matrix/client/v3/login", body)
        if status != 200:
            raise MatrixError(f"login {user}", status, data)
        return data

    def whoami(self, token):
        status, data = self._call("GET", "/_matrix/client/v3/account/whoami", token=token)
        if status != 200:
            raise MatrixError("whoami", status, data)
        return data


# ---- register/s --------------------------------------------------------------------------------

def register_load(base, duration, workers, prefix, password, registration_token=None):
    """Registers new accounts <prefix><n> from `workers` threads for `duration` seconds (each
    thread one client; a 429 or 503 counts as an error and is not waited out). Returns
    {"ok", "errors", "duration_s", "registers_per_s", "lat_p50_us", "lat_p99_us",
    "statuses"}."""
    stop_at = time.time() + duration
    lock = threading.Lock()
    lat, statuses, counter = [], {}, [0]

    def worker():
        client = MatrixClient(base, wait_rate_limits=False)
        while time.time() < stop_at:
            with lock:
                counter[0] += 1
                n = counter[0]
            t0 = time.perf_counter()
            try:
                client.register(f"{prefix}{n}", password, registration_token)
                key = 200
            except MatrixError as e:
                key = e.status
            except requests.RequestException as e:
                key = type(e).__name__
            with lock:
                statuses[key] = statuses.get(key, 0) + 1
                if key == 200:
                    lat.append((time.perf_counter() - t0) * 1e6)

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    secs = time.time() - t0
    ok = statuses.get(200, 0)
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else None

    return {"ok": ok, "errors": sum(v for k, v in statuses.items() if k != 200),
            "duration_s": secs, "registers_per_s": ok / secs, "lat_p50_us": pct(0.5),
            "lat_p99_us": pct(0.99), "statuses": {str(k): v for k, v in statuses.items()}}


# ---- the --target run --------------------------------------------------------------------------

class PidProcess:
    """CPU accounting for a server this harness did not start (--target-pid), for run_wrk."""

    def __init__(self, pid, rb):
        self.pid, self.rb = pid, rb

    def cpu_seconds(self):
        pids = [self.pid] + self.rb.proc_children(self.pid)
        return sum(self.rb.proc_cpu_ticks(p) for p in pids) / self.rb.CLK_TCK


def _wrk_row(rb, url, threads, conns, duration, script, env, proc):
    """One wrk run; "ok_rps" counts only the 2xx answers (a rate-limited server's 429s are
    fast and would otherwise count as throughput)."""
    w = rb.run_wrk(url, threads, conns, duration, script, env=env, server=proc)
    w["ok_rps"] = w["ok"] / (w["duration_us"] / 1e6)
    if proc is not None:
        try:
            w["rss_kib"] = rb.proc_mem(proc.pid)["VmRSS"]
        except OSError:
            pass
    return w


def autogroup(pid="self"):
    """The scheduler autogroup of a process (/proc/<pid>/autogroup), or None."""
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return None


def shared_group_warning(target_pid):
    """A warning when the target server is in the load generator's scheduler autogroup.
    With kernel.sched_autogroup_enabled, CPU is shared fairly between sessions first: the
    harness starts nginx (and, without --target, myelin) in sessions of their own, so a target
    that shares wrk's session is scheduled differently from its ceiling (measured here: a
    myelin started from the harness's shell showed 2x nginx; started with setsid, 0.77x)."""
    if not target_pid:
        return None
    mine, theirs = autogroup(), autogroup(target_pid)
    if mine and theirs and mine == theirs:
        return (f"the target (pid {target_pid}) shares this harness's scheduler autogroup "
                f"({mine}): start it in a session of its own (setsid, or as a service), or its "
                "ratio to nginx is skewed")
    return None


def setup_accounts(args, client, log):
    """The account the benchmarks use: (user, password, note). Registers one unless
    --target-user is given."""
    if args.target_user:
        if not args.target_password:
            raise SystemExit("--target-user needs --target-password")
        return args.target_user, args.target_password, "existing account (--target-user)"
    user = f"bench_{secrets.token_hex(4)}"
    password = "bench-" + secrets.token_hex(12)
    try:
        client.register(user, password, args.registration_token)
    except MatrixError as e:
        raise SystemExit(f"cannot register a benchmark account on {client.base} ({e}); pass "
                         "--target-user/--target-password (or --registration-token)")
    log(f"target: registered {user}")
    return user, password, "registered by the harness"


def run_target(args, rb, log):
    """The whole --target run; returns (meta, results)."""
    base = args.target.rstrip("/")
    if urlsplit(base).path not in ("", "/"):
        raise SystemExit("--target: give the server's base URL (no path), e.g. http://host:8008")
    rounds, duration = args.rounds, args.duration
    client = MatrixClient(base)
    versions = client.versions()
    proc = PidProcess(args.target_pid, rb) if args.target_pid else None
    log(f"target {base}: versions {', '.join(versions.get('versions', [])[-3:])}; "
        f"{rounds} round(s) x {duration}s (load {rb.loadavg()})")
    results = {}
    user, password, account_note = setup_accounts(args, client, log)
    if "m.login.password" not in client.login_types():
        raise SystemExit("the target offers no m.login.password login")
    n = args.target_sessions
    access = [client.login(user, password, f"BENCHW{i:04d}")["access_token"] for i in range(n)]
    client.whoami(access[0])
    refresh_logins = []
    first = client.login(user, password, "BENCHR0000", refresh=True)
    if first.get("refresh_token"):
        refresh_logins = [first] + [client.login(user, password, f"BENCHR{i:04d}", refresh=True)
                                    for i in range(1, n)]
    log(f"target: {n} whoami sessions, {len(refresh_logins)} refresh sessions")
    tmp = args.tmp
    token_file = tmp / "target-access.txt"
    token_file.write_text("".join(t + "\n" for t in access))
    local = is_loopback(base)

    def nginx_ceiling(name, path, token):
        headers = {"Authorization": "Bearer " + token} if token else {}
        r = requests.get(base + path, headers=headers, timeout=10)
        try:
            return rb.Nginx(args.ctx, f"nginx-target-{name}", rb.CORES, r.text,
                            r.headers.get("Content-Type", "application/json"),
                            rb.copy_headers(r))
        except Exception as e:  # a body nginx cannot return (e.g. a '$'): no ceiling
            log(f"target: no nginx ceiling for {name}: {e}")
            return None

    for name, path, script, env, token in (
            ("versions", "/_matrix/client/versions", "report.lua", {}, None),
            ("whoami", "/_matrix/client/v3/account/whoami", "whoami.lua",
             {"MYELIN_TOKENS": str(token_file)}, access[0])):
        ng = nginx_ceiling(name, path, token) if local and not args.no_ceilings else None
        try:
            rs = []
            rb.run_wrk(base + path, 2, 64, 1, script, env=env)  # warm-up
            for r in range(rounds):
                rnd = {"load_before": rb.loadavg()}
                order = ["target", "nginx"] if r % 2 == 0 else ["nginx", "target"]
                for who in order:
                    if who == "nginx" and ng is None:
                        continue
                    url = (ng.base if who == "nginx" else base) + path
                    srv = ng.server if who == "nginx" else proc
                    rnd[who] = _wrk_row(rb, url, 2, 64, duration, script, env, srv)
                    time.sleep(1)
                if ng is not None:
                    rnd["ratio"] = rnd["target"]["ok_rps"] / rnd["nginx"]["rps"]
                t = rnd["target"]
                log(f"target {name} round {r + 1}: {t['ok_rps']:,.0f} req/s 2xx "
                    f"(non-2xx {t['err_status']})" +
                    (f", nginx {rnd['nginx']['rps']:,.0f}, ratio {rnd['ratio']:.2f}"
                     if ng else ""))
                rs.append(rnd)
            results[name] = {"rounds": rs, "ceiling": "nginx, same bytes" if ng else None}
        finally:
            if ng is not None:
                ng.stop()

    login_env = {"MYELIN_USER": user, "MYELIN_PASSWORD": password}
    rs = []
    for r in range(rounds):
        w = _wrk_row(rb, base, 2, 8, duration, "login.lua", login_env, proc)
        w["logins_per_s"] = w["ok"] / (w["duration_us"] / 1e6)
        rs.append({"load_before": rb.loadavg(), "target": w})
        log(f"target login round {r + 1}: {w['logins_per_s']:.1f} logins/s "
            f"(non-2xx {w['err_status']})")
        time.sleep(1)
    results["login"] = {"rounds": rs}

    if refresh_logins:
        rs = []
        pool = [x["refresh_token"] for x in refresh_logins]
        for r in range(rounds):
            rfile = tmp / f"target-refresh-{r}.txt"
            rfile.write_text("".join(t + "\n" for t in pool))
            # At most half the tokens in flight: wrk takes a token for a request it never
            # sends at the start (so one connection per token would leave one without).
            conns = max(1, (len(pool) - 1) // 2)
            w = _wrk_row(rb, base + "/_matrix/client/v3/refresh", 1, conns, duration,
                         "refresh.lua", {"MYELIN_TOKENS": str(rfile)}, proc)
            w["connections"] = conns
            w["rotations_per_s"] = w["rotated"] / (w["duration_us"] / 1e6)
            rs.append({"load_before": rb.loadavg(), "target": w})
            log(f"target refresh round {r + 1}: {w['rotations_per_s']:,.0f} rotations/s "
                f"(non-2xx {w['err_status']})")
            # The pool wrk ended with is lost (wrk prints counts, not tokens): new sessions.
            if r + 1 < rounds:
                pool = [client.login(user, password, f"BENCHR{r + 1}{i:03d}",
                                     refresh=True)["refresh_token"] for i in range(n)]
            time.sleep(1)
        results["refresh"] = {"rounds": rs, "sessions": n}
    else:
        results["refresh"] = {"skipped": "the target's login gave no refresh_token "
                                          "(refresh tokens not offered)"}

    if args.target_user and not args.registration_token and not args.target_register:
        results["register"] = {"skipped": "existing account given: registration not tried "
                                          "(--target-register to measure it anyway)"}
    else:
        rs = []
        for r in range(rounds):
            g = register_load(base, duration, 8, f"bench_{secrets.token_hex(3)}_", password,
                              args.registration_token)
            rs.append({"load_before": rb.loadavg(), "target": g})
            log(f"target register round {r + 1}: {g['registers_per_s']:.1f}/s "
                f"(statuses {g['statuses']})")
        results["register"] = {"rounds": rs}

    # Best effort: log out the sessions the set-up made (an existing account should not keep
    # 2 × sessions devices). Refresh sessions rotated by wrk may survive (their tokens are
    # gone with wrk), as may the login benchmark's device WRKLOGIN: use a dedicated account.
    logged_out = 0
    for token in access + [x.get("access_token") for x in refresh_logins]:
        try:
            status, _ = client._call("POST", "/_matrix/client/v3/logout", {}, token=token)
            logged_out += status == 200
        except requests.RequestException:
            pass
    log(f"target: logged out {logged_out} of the set-up's sessions")

    warning = shared_group_warning(args.target_pid)
    if warning:
        log("target: WARNING: " + warning)
    meta = {"target": base, "account": account_note, "user": user, "sessions": n,
            "warning": warning,
            "versions": versions.get("versions", []), "target_pid": args.target_pid,
            "loopback": local}
    return meta, results


# ---- the report (pure) -------------------------------------------------------------------------

def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(v, f="{:,.0f}"):
    return "n/a" if v is None else f.format(v)


def _range(values, f="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return f.format(m)
    return f"{f.format(m)} ({f.format(min(values))}–{f.format(max(values))})"


BENCH_ROWS = (  # name, what, rate key (2xx only), unit, load, the ceiling when not measured
    ("versions", "GET /_matrix/client/versions", "ok_rps", "req/s", "wrk -t2 -c64",
     "nginx: only for a target on this machine"),
    ("whoami", "GET /account/whoami", "ok_rps", "req/s", "wrk -t2 -c64",
     "nginx: only for a target on this machine"),
    ("login", "POST /login (password)", "logins_per_s", "logins/s", "wrk -t2 -c8",
     "skipped: argon2id micro-benchmark is Myelin's hasher"),
    ("refresh", "POST /refresh", "rotations_per_s", "rotations/s", "wrk -t1 -c<sessions/2>",
     "skipped: storage micro-benchmark is Myelin's storage"),
    ("register", "POST /register (UIA)", "registers_per_s", "registrations/s",
     "8 Python threads", "skipped: argon2id micro-benchmark is Myelin's hasher"),
)


def summary_rows(results):
    """One row per benchmark: name, what, load, rate, ceiling, ratio, p50/p99 ms, errors, CPU."""
    rows = []
    for name, what, key, unit, load, no_ceiling in BENCH_ROWS:
        res = results.get(name)
        if res is None:
            continue
        if "skipped" in res or "error" in res:
            rows.append({"bench": name, "what": what, "load": load,
                         "rate": "skipped: " + str(res.get("skipped") or res.get("error")),
                         "ceiling": "", "ratio": "", "latency": "", "errors": "", "cpu": ""})
            continue
        rs = res["rounds"]
        t = [x["target"] for x in rs]
        has_ng = any("nginx" in x for x in rs)
        errors = sum(x.get("errors", 0) for x in t)
        answered = sum(x.get("requests", x.get("ok", 0) + x.get("errors", 0)) for x in t)
        cpu = _med(x.get("cpu_us_per_req") for x in t)
        rows.append({
            "bench": name, "what": what, "load": load,
            "rate": _range([x.get(key) for x in t], "{:,.1f}" if key != "ok_rps" else "{:,.0f}")
                    + " " + unit,
            "ceiling": ("nginx " + _range([x["nginx"]["rps"] for x in rs if "nginx" in x])
                        + " req/s") if has_ng else no_ceiling,
            "ratio": _range([x.get("ratio") for x in rs], "{:.2f}") if has_ng else "",
            "latency": f"{_fmt(_med(x.get('lat_p50_us') for x in t), '{:,.0f}')} / "
                       f"{_fmt(_med(x.get('lat_p99_us') for x in t), '{:,.0f}')} µs",
            "errors": (f"{errors:,} ({100.0 * errors / answered:.0f} %)"
                       if errors and answered else f"{errors:,}"),
            "cpu": _fmt(cpu, "{:.1f}") if cpu is not None else "",
        })
    return rows


def format_target_report(meta, results):
    """REPORT-target.md's text."""
    L = ["# Homeserver benchmark (`bench/run_bench.py --target`) — results of one run\n"]
    L.append(f"Target **{meta['target']}** (client-server versions: "
             f"{', '.join(meta.get('versions', [])) or 'n/a'}), account: {meta['account']}, "
             f"{meta['sessions']} sessions for whoami and refresh. Run {meta.get('started', '?')} "
             f"→ {meta.get('finished', '?')} ({meta.get('elapsed_s', 0):.0f} s), "
             f"`{meta.get('command', '')}`, harness commit `{meta.get('commit', '?')}`. "
             f"Load generator: {meta.get('cores', '?')} cores, {meta.get('cpu_model', '?')}; "
             f"load average at start {meta.get('load_start', '?')}, at end "
             f"{meta.get('load_end', '?')}. {meta.get('rounds', '?')} round(s) of "
             f"{meta.get('duration_s', '?')} s per figure.\n")
    L.append("Medians over the rounds, (min–max) in brackets; rate = 2xx answers per second; "
             "latency = p50 / p99 of all answers; errors = non-2xx answers + socket errors over "
             "all rounds, with their share of the requests (a server's rate limits show up "
             "here as 429s: lift them for a comparison of throughput). "
             + ("Ceiling = nginx on this machine answering the target's exact bytes, run in the "
                "same round, order alternating. " if meta.get("loopback") else
                "The target is not on this machine: no nginx ceiling (it would measure the "
                "network, not the server). ")
             + "Not measured against a foreign server: the argon2id and storage "
             "micro-benchmarks (they measure Myelin's own code), RSS and server CPU"
             + (" (given here for --target-pid " + str(meta["target_pid"]) + ")"
                if meta.get("target_pid") else " (give --target-pid PID for a local server)")
             + ".\n")
    if meta.get("warning"):
        L.append(f"**Warning:** {meta['warning']}.\n")
    L.append("| benchmark | request | load | rate | ceiling | ratio | latency p50 / p99 | "
             "errors | server CPU µs/req |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in summary_rows(results):
        L.append(f"| {r['bench']} | {r['what']} | {r['load']} | {r['rate']} | {r['ceiling']} | "
                 f"{r['ratio']} | {r['latency']} | {r['errors']} | {r['cpu']} |")
    L.append("")
    L.append("## Rounds\n")
    L.append("| benchmark | round | load | rate | non-2xx | p50 / p99 µs | nginx req/s | ratio |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, _, key, unit, _, _ in BENCH_ROWS:
        res = results.get(name)
        if not res or "rounds" not in res:
            continue
        for i, x in enumerate(res["rounds"]):
            t = x["target"]
            ng = x.get("nginx")
            L.append(f"| {name} | {i + 1} | {x.get('load_before', '')} | "
                     f"{_fmt(t.get(key), '{:,.1f}')} {unit} | "
                     f"{t.get('err_status', t.get('errors', 0))} | "
                     f"{_fmt(t.get('lat_p50_us'))} / {_fmt(t.get('lat_p99_us'))} | "
                     f"{_fmt(ng['rps']) if ng else ''} | "
                     f"{_fmt(x.get('ratio'), '{:.2f}') if ng else ''} |")
    L.append("")
    L.append("Raw figures: the `.json` file next to this report. Method: `bench/README.md`.\n")
    return "\n".join(L)
