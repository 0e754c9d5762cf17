#!/usr/bin/python3
"""/sync under load (issue #8 §5): send-to-sync latency, messages/s in a 100-member room, the
initial sync of a user in 100 rooms, and the memory of an idle long-poll.

One release myelin (network threads = cores, rate limits off, cheap argon2id, SQLite in WAL with
synchronous=FULL as by default; `--postgres` adds the same run on a throwaway PostgreSQL cluster
from scripts/pg-test-cluster.sh), set up through the client-server API only: MEMBERS users
registered (m.login.dummy) who all join one public room ("the big room"); a user "hub" who creates
ROOMS rooms (public_chat preset, name and topic), each joined by a user "peer" (9 state events) and
holding ROOM_MESSAGES messages. Then:

  latency_1    user B long-polls /sync?since=…&timeout=30000 (timeline filter limit 1000); user A
               PUTs a message into the big room; latency = B's /sync answer read − A's PUT
               answer read (and − A's PUT start). MESSAGES messages, one at a time: the next is
               sent GAP s after every poller had the previous one (so each long-poll is parked
               again in the notifier, not answered by its first read).
  latency_all  the same with every member of the big room long-polling (MEMBERS − 1 receivers
               per message): per receiver and the last receiver of each message.
  latency_hub  the same for the hub (a user in ROOMS rooms) woken by the peer's message in one
               of them (the incremental sync then reads every joined room).
  throughput   SENDERS members send back to back into the big room for DURATION s while every
               member long-polls and consumes: sent/s, delivered events/s, delivery latency
               (receipt − PUT answer) and /sync answer time p50/p99, server CPU per event.
  initial      the hub's initial sync (no filter: timeline limit 10 per room), REPEAT times:
               ms (median), bytes; and an incremental sync with nothing new (timeout=0) of the
               hub (ROOMS rooms) against a member of one room.
  idle_polls   on a restarted server (RSS not inflated by the phases above): RSS with no
               connection, with IDLE_POLLS idle keep-alive connections (after one GET
               /versions), then with a /sync long-poll (timeout 300 s) parked on each of them
               (spread over the MEMBERS users): KiB per connection, per long-poll; then one
               message into the big room wakes them all: time until every answer was read.

Latencies are measured by this Python client (raw keep-alive HTTP/1.1 sockets, one thread per
connection, time.perf_counter when a whole answer has been read), which shares the 2 cores with
the server: its own CPU is reported next to the server's. Everything runs on 127.0.0.1, every
wait is bounded, and every process started here is stopped here (bench/run_bench.py's helpers).
Writes bench/results/sync.json and bench/results/SYNC.md (or --output, its .json beside it);
`bench/run.sh --only sync` runs it inside the main report.
Usage: bench/sync_bench.py [--quick] [--members N] [--messages N] [--rooms N]
                           [--room-messages N] [--duration S] [--senders N] [--idle-polls N]
                           [--postgres] [--output FILE]
Environment: MYELIN_BUILD (default build/), MYELIN_BENCH_TMP (parent of the scratch folder).
"""

import argparse
import datetime
import itertools
import json
import math
import os
import random
import resource
import selectors
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402  (process helpers, Myelin, PostgreSQL cluster)

V3 = "/_matrix/client/v3"
POLL_TIMEOUT_MS = 30_000
IDLE_POLL_TIMEOUT_MS = 300_000
# Receivers consume everything sent: the highest timeline limit (a limited answer would leave
# events to fetch with /messages; they are counted as not delivered).
POLL_FILTER = urllib.parse.quote(json.dumps({"room": {"timeline": {"limit": 1000}}},
                                            separators=(",", ":")), safe="")

QUICK = dict(members=10, messages=40, rooms=10, room_messages=5, duration=3, senders=2,
             idle_polls=200, repeat=3, gap=0.03)
FULL = dict(members=100, messages=500, rooms=100, room_messages=20, duration=10, senders=4,
            idle_polls=5000, repeat=5, gap=0.05)


# ---- a minimal HTTP/1.1 keep-alive client ----------------------------------------------------

class Conn:
    """One keep-alive connection to 127.0.0.1:port; request() returns (status, body bytes,
    t_sent, t_done) with perf_counter times. Not thread-safe: one per thread."""

    retried = 0  # set-up requests retried after a 503/429, all connections

    def __init__(self, port, token=None, timeout=60.0):
        self.port, self.token = port, token
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, method, path, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if self.token:
            head += f"Authorization: Bearer {self.token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + data)

    def read(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for ln in lines[1:]:
            name, _, value = ln.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked answers are not expected from myelin")
        while len(rest) < length:
            self.buf = rest
            self._fill()
            rest = self.buf
        self.buf = rest[length:]
        return status, rest[:length]

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def request(self, method, path, body=None):
        t0 = time.perf_counter()
        self.send(method, path, body)
        status, data = self.read()
        return status, data, t0, time.perf_counter()

    def json(self, method, path, body=None, expect=200, retries=5):
        """For the set-up: a 503 (PostgreSQL serialization conflicts the server gave up on)
        or 429 is retried after a short wait, as clients do, up to `retries` times (counted
        in Conn.retried); the measured paths use request() and count every answer."""
        for attempt in range(retries + 1):
            status, data, _, _ = self.request(method, path, body)
            if status not in (429, 503) or attempt == retries:
                break
            Conn.retried += 1
            time.sleep(0.1 * (attempt + 1))
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def q(text):
    return urllib.parse.quote(text, safe="")


def sync_path(since=None, timeout_ms=None, filt=POLL_FILTER):
    params = []
    if filt:
        params.append("filter=" + filt)
    if since:
        params.append("since=" + q(since))
    if timeout_ms is not None:
        params.append(f"timeout={timeout_ms}")
    return V3 + "/sync" + ("?" + "&".join(params) if params else "")


def send_path(room_id, txn):
    return f"{V3}/rooms/{q(room_id)}/send/m.room.message/{txn}"


def message(seq, text="bench"):
    return {"msgtype": "m.text", "body": f"{text} message {seq:06d}", "bench_seq": seq}


def pct(values, p):
    """The p-th percentile (nearest rank) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p * len(s) / 100.0) - 1))]


def dist_ms(values_s):
    """p50 / p99 / max of a list of seconds, in ms."""
    if not values_s:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {"n": len(values_s), "p50_ms": pct(values_s, 50) * 1e3,
            "p99_ms": pct(values_s, 99) * 1e3, "max_ms": max(values_s) * 1e3}


def server_cpu_s(my):
    """CPU seconds of the server's threads so far, to the nanosecond (/proc/<pid>/task/*/schedstat:
    /proc/<pid>/stat counts in 10 ms ticks, too coarse for one sync). Threads that exited are
    not counted; the server's network and storage threads live as long as it does."""
    total = 0
    task_dir = Path(f"/proc/{my.server.pid}/task")
    for task in task_dir.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread just exited
    return total / 1e9


def self_cpu_s():
    t = os.times()
    return t.user + t.system


# ---- set-up through the client-server API ----------------------------------------------------

class User:
    def __init__(self, name, user_id, token):
        self.name, self.user_id, self.token = name, user_id, token


def register_users(base, names, workers=8):
    def one(name):
        r = rb.register(base, name, rb.PASSWORD)
        return User(name, r["user_id"], r["access_token"])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, names))


def join_all(port, users, room_id, workers=8):
    def one(u):
        c = Conn(port, u.token)
        try:
            c.json("POST", f"{V3}/rooms/{q(room_id)}/join", {})
        finally:
            c.close()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, users))


def create_room(port, user, name, preset="public_chat"):
    c = Conn(port, user.token)
    try:
        return c.json("POST", f"{V3}/createRoom",
                      {"preset": preset, "name": name, "topic": f"topic of {name}"})["room_id"]
    finally:
        c.close()


def fill_rooms(port, senders, rooms, per_room, workers=8):
    """per_room messages in each room, sent by the senders in turn, `workers` in parallel."""
    jobs = [(room, i) for room in rooms for i in range(per_room)]

    local = threading.local()
    conns = []
    lock = threading.Lock()

    def one(job):
        room, i = job
        if not hasattr(local, "conns"):
            local.conns = {u.user_id: Conn(port, u.token) for u in senders}
            with lock:
                conns.extend(local.conns.values())
        user = senders[i % len(senders)]
        local.conns[user.user_id].json("PUT", send_path(room, f"fill{i}"), message(i, "filler"))

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, jobs))
    finally:
        for c in conns:
            c.close()
    return len(jobs)


def current_since(port, user):
    """A next_batch for `user` now (an initial sync with a timeline limit of 0)."""
    c = Conn(port, user.token)
    try:
        return c.json("GET", sync_path(filt=q('{"room":{"timeline":{"limit":0}}}')))["next_batch"]
    finally:
        c.close()


# ---- pollers -----------------------------------------------------------------------------------

class Board:
    """What the pollers received: per message sequence number, the perf_counter times at which
    each poller read it; wakes whoever waits for a message to reach every poller."""

    def __init__(self, pollers):
        self.pollers = pollers
        self.cond = threading.Condition()
        self.got = {}  # seq -> {poller index: t}
        self.answers = []  # (poller index, seconds from request sent to answer read, events)
        self.limited = 0
        self.errors = []

    def record(self, idx, seqs, t, answer_s, limited):
        with self.cond:
            for s in seqs:
                self.got.setdefault(s, {})[idx] = t
            self.answers.append((idx, answer_s, len(seqs)))
            if limited:
                self.limited += 1
            self.cond.notify_all()

    def wait_all(self, seq, receivers, timeout):
        """Waits until every poller index in `receivers` has message seq; False on timeout."""
        return self.wait_every([seq], receivers, timeout)

    def wait_every(self, seqs, receivers, timeout):
        """Waits until every poller index in `receivers` has every message in `seqs`; False on
        timeout. Concurrent senders' sequence numbers are not in stream order: the highest one
        can be delivered before a lower one that committed later, so waiting for it alone is
        not enough."""
        deadline = time.time() + timeout
        with self.cond:
            for seq in seqs:
                while not receivers <= set(self.got.get(seq, {})):
                    left = deadline - time.time()
                    if left <= 0 or self.errors:
                        return False
                    self.cond.wait(left)
            return True


class Poller(threading.Thread):
    """Long-polls /sync for one user on one connection until stop(), reporting the bench
    messages (bench_seq) of the rooms it watches to the board."""

    def __init__(self, idx, port, user, since, board, rooms):
        super().__init__(daemon=True)
        self.idx, self.user, self.since, self.board, self.rooms = idx, user, since, board, rooms
        self.conn = Conn(port, user.token, timeout=POLL_TIMEOUT_MS / 1000 + 30)
        self.stopping = False

    def run(self):
        try:
            while not self.stopping:
                status, data, t0, t1 = self.conn.request(
                    "GET", sync_path(self.since, POLL_TIMEOUT_MS))
                if status != 200:
                    raise RuntimeError(f"/sync: {status} {data[:200]!r}")
                body = json.loads(data)
                self.since = body["next_batch"]
                seqs, limited = [], False
                for room_id, room in body.get("rooms", {}).get("join", {}).items():
                    if room_id not in self.rooms:
                        continue
                    tl = room.get("timeline", {})
                    limited = limited or tl.get("limited", False)
                    for e in tl.get("events", []):
                        s = e.get("content", {}).get("bench_seq")
                        if isinstance(s, int) and e.get("type") == "m.room.message":
                            seqs.append(s)
                self.board.record(self.idx, seqs, t1, t1 - t0, limited)
        except (OSError, ConnectionError) as e:
            if not self.stopping:
                self.board.errors.append(f"poller {self.idx}: {e}")
                with self.board.cond:
                    self.board.cond.notify_all()
        except Exception as e:  # noqa: BLE001  (reported, the run fails)
            self.board.errors.append(f"poller {self.idx}: {e}")
            with self.board.cond:
                self.board.cond.notify_all()

    def stop(self):
        self.stopping = True
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def start_pollers(port, users, rooms):
    sinces = [current_since(port, u) for u in users]
    board = Board(len(users))
    pollers = [Poller(i, port, u, s, board, set(rooms)) for i, (u, s) in
               enumerate(zip(users, sinces))]
    for p in pollers:
        p.start()
    return board, pollers


def stop_pollers(pollers):
    for p in pollers:
        p.stop()
    for p in pollers:
        p.join(timeout=10)
        p.conn.close()


# ---- the measurements --------------------------------------------------------------------------

def latency_run(my, sender, receivers, room_for, n, gap, label, seq0):
    """n messages from `sender`, one at a time, each into room_for(i), long-polled by every user
    in `receivers`; per message, the times each receiver read it."""
    rooms = {room_for(i) for i in range(n)}
    board, pollers = start_pollers(my.port, receivers, rooms)
    conn = Conn(my.port, sender.token)
    everyone = set(range(len(receivers)))
    sent = []  # (seq, t_put_start, t_put_done)
    cpu0, me0, t_start = server_cpu_s(my), self_cpu_s(), time.perf_counter()
    try:
        time.sleep(max(gap, 0.2))  # the first long-polls park
        for i in range(n):
            seq = seq0 + i
            status, data, t0, t1 = conn.request("PUT", send_path(room_for(i), f"{label}{seq}"),
                                                message(seq))
            if status != 200:
                raise RuntimeError(f"send: {status} {data[:200]!r}")
            sent.append((seq, t0, t1))
            if not board.wait_all(seq, everyone, 30):
                raise RuntimeError(f"{label}: message {seq} not delivered to every poller within "
                                   f"30 s: {board.errors[:3]}")
            time.sleep(gap * (1 + 0.2 * random.random()))  # the long-polls park again
    finally:
        wall = time.perf_counter() - t_start
        cpu, me = server_cpu_s(my) - cpu0, self_cpu_s() - me0
        stop_pollers(pollers)
        conn.close()
    others = [k for k, u in enumerate(receivers) if u.user_id != sender.user_id]
    from_done, from_start, last_done, put = [], [], [], []
    for seq, t0, t1 in sent:
        times = [board.got[seq][k] for k in others]
        from_done += [t - t1 for t in times]
        from_start += [t - t0 for t in times]
        last_done.append(max(times) - t1)
        put.append(t1 - t0)
    out = {"messages": len(sent), "receivers": len(others),
           "from_put_done": dist_ms(from_done), "from_put_start": dist_ms(from_start),
           "last_receiver_from_put_done": dist_ms(last_done), "put": dist_ms(put),
           "before_put_done": sum(1 for x in from_done if x < 0),
           "server_cpu_ms_per_message": cpu * 1e3 / max(1, len(sent)),
           "client_cpu_share": me / wall if wall else None, "limited": board.limited}
    rb.log(f"sync {label}: {len(sent)} messages to {len(others)} receiver(s): from PUT answer "
           f"p50 {out['from_put_done']['p50_ms']:.2f} / p99 {out['from_put_done']['p99_ms']:.2f} ms"
           f", from PUT start p50 {out['from_put_start']['p50_ms']:.2f} / p99 "
           f"{out['from_put_start']['p99_ms']:.2f} ms; last receiver p99 "
           f"{out['last_receiver_from_put_done']['p99_ms']:.2f} ms; server CPU "
           f"{out['server_cpu_ms_per_message']:.2f} ms/message")
    return out


def throughput_run(my, senders, receivers, room_id, duration, seq0):
    """`senders` send back to back for `duration` s while every receiver long-polls."""
    board, pollers = start_pollers(my.port, receivers, {room_id})
    time.sleep(0.5)
    stop = threading.Event()
    seqs = itertools.count(seq0)
    sent = {}  # seq -> (t_put_start, t_put_done)
    lock = threading.Lock()
    errors = []

    def send_loop(user):
        c = Conn(my.port, user.token)
        try:
            while not stop.is_set():
                seq = next(seqs)
                status, data, t0, t1 = c.request("PUT", send_path(room_id, f"tp{seq}"),
                                                 message(seq))
                if status != 200:
                    raise RuntimeError(f"send: {status} {data[:200]!r}")
                with lock:
                    sent[seq] = (t0, t1)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
        finally:
            c.close()

    threads = [threading.Thread(target=send_loop, args=(u,), daemon=True) for u in senders]
    cpu0, me0 = server_cpu_s(my), self_cpu_s()
    with board.cond:
        answers0 = len(board.answers)
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    t_end = time.perf_counter()
    cpu_send, me_send = server_cpu_s(my) - cpu0, self_cpu_s() - me0
    # Let the receivers catch up (bounded), then stop them.
    everyone = set(range(len(receivers)))
    caught_up = board.wait_every(sorted(sent), everyone, 30)
    t_caught = time.perf_counter()
    cpu_all = server_cpu_s(my) - cpu0
    stop_pollers(pollers)
    if errors or board.errors:
        raise RuntimeError(f"throughput: {(errors + board.errors)[:3]}")
    window = t_end - t_start
    with board.cond:
        delivered = sum(len(v) for s, v in board.got.items() if s in sent)
        in_window = sum(1 for s, v in board.got.items() if s in sent
                        for t in v.values() if t <= t_end)
        answers = board.answers[answers0:]
        lat = [t - sent[s][1] for s, v in board.got.items() if s in sent for t in v.values()]
    expected = len(sent) * len(receivers)
    out = {"senders": len(senders), "receivers": len(receivers), "window_s": window,
           "sent": len(sent), "sent_per_s": len(sent) / window,
           "delivered": delivered, "expected": expected, "caught_up": caught_up,
           "catch_up_s": t_caught - t_end,
           "delivered_per_s_in_window": in_window / window,
           "delivered_per_s_overall": delivered / (t_caught - t_start),
           "put": dist_ms([b - a for a, b in sent.values()]),
           "delivery_from_put_done": dist_ms(lat),
           "sync_answer": dist_ms([a for _, a, _ in answers]),
           "sync_answers": len(answers),
           "events_per_answer": (sum(n for _, _, n in answers) / len(answers)) if answers else 0,
           "limited_answers": board.limited,
           "server_cores_busy": cpu_send / window,
           "server_cpu_us_per_delivered": cpu_all * 1e6 / delivered if delivered else None,
           "server_cpu_us_per_sent": cpu_all * 1e6 / len(sent) if sent else None,
           "client_cpu_share": me_send / window}
    rb.log(f"sync throughput: {out['sent_per_s']:,.0f} sent/s by {len(senders)}, "
           f"{out['delivered_per_s_in_window']:,.0f} delivered events/s to {len(receivers)} "
           f"({delivered:,}/{expected:,}, caught up in {out['catch_up_s']:.2f}s); delivery p50/p99 "
           f"{out['delivery_from_put_done']['p50_ms']:.1f}/{out['delivery_from_put_done']['p99_ms']:.1f}"
           f" ms; /sync answer p99 {out['sync_answer']['p99_ms']:.1f} ms; server "
           f"{out['server_cores_busy']:.2f} cores, client {out['client_cpu_share']:.2f}")
    return out


def initial_run(my, hub, one_room_user, repeat, poke):
    """The hub's initial sync (default filter), `repeat` times; then incremental syncs (timeout
    0) of the hub and of a user in one room, with nothing new and with a new event elsewhere
    (poke: the (sender, room) of such an event for the hub, then for the other user)."""
    c = Conn(my.port, hub.token)
    out = {"runs": []}
    try:
        since = None
        for _ in range(repeat):
            cpu0 = server_cpu_s(my)
            status, data, t0, t1 = c.request("GET", V3 + "/sync")  # no filter: the defaults
            cpu = server_cpu_s(my) - cpu0
            if status != 200:
                raise RuntimeError(f"initial /sync: {status} {data[:200]!r}")
            body = json.loads(data)
            since = body["next_batch"]
            joined = body["rooms"]["join"]
            out["runs"].append({"ms": (t1 - t0) * 1e3, "bytes": len(data),
                                "server_cpu_ms": cpu * 1e3})
        out["rooms"] = len(joined)
        out["timeline_events"] = sum(len(r["timeline"]["events"]) for r in joined.values())
        out["state_events"] = sum(len(r["state"]["events"]) for r in joined.values())
        out["ms"] = statistics.median(r["ms"] for r in out["runs"])
        out["bytes"] = out["runs"][-1]["bytes"]
        out["server_cpu_ms"] = statistics.median(r["server_cpu_ms"] for r in out["runs"])

        def incremental(conn, user, poke, n=50):
            """Median ms and mean server CPU µs of n incremental syncs (timeout 0) from one
            `since`: with poke = None nothing happened since; with (sender, room), one message
            was sent after `since` into a room the user is not in, so every joined room is
            looked at and nothing found (what most syncs on a busy server do)."""
            since = current_since(my.port, user)
            if poke:
                sender, room = poke
                c2 = Conn(my.port, sender.token)
                try:
                    c2.json("PUT", send_path(room, f"poke{time.monotonic_ns()}"), message(0))
                finally:
                    c2.close()
            times = []
            cpu0 = server_cpu_s(my)
            for _ in range(n):
                status, data, t0, t1 = conn.request("GET", sync_path(since, 0, filt=None))
                if status != 200:
                    raise RuntimeError(f"incremental /sync: {status} {data[:200]!r}")
                if json.loads(data)["rooms"]["join"]:
                    raise RuntimeError("an incremental sync expected empty found rooms")
                times.append(t1 - t0)
            return statistics.median(times) * 1e3, (server_cpu_s(my) - cpu0) * 1e6 / n

        c1 = Conn(my.port, one_room_user.token)
        try:
            for key, poke_hub, poke_one in (("empty", None, None),
                                            ("elsewhere", poke[0], poke[1])):
                out[f"incremental_{key}_ms"], out[f"incremental_{key}_cpu_us"] = \
                    incremental(c, hub, poke_hub)
                out[f"incremental_{key}_one_room_ms"], \
                    out[f"incremental_{key}_one_room_cpu_us"] = \
                    incremental(c1, one_room_user, poke_one)
        finally:
            c1.close()
    finally:
        c.close()
    rb.log(f"sync initial: {out['rooms']} rooms, {out['bytes']:,} bytes, {out['ms']:.1f} ms "
           f"(server CPU {out['server_cpu_ms']:.1f} ms); incremental, nothing new "
           f"{out['incremental_empty_ms']:.2f} ms / {out['incremental_empty_cpu_us']:.0f} µs CPU "
           f"({out['rooms']} rooms) vs {out['incremental_empty_one_room_ms']:.2f} ms / "
           f"{out['incremental_empty_one_room_cpu_us']:.0f} µs (1 room); an event elsewhere "
           f"{out['incremental_elsewhere_ms']:.2f} ms / {out['incremental_elsewhere_cpu_us']:.0f} "
           f"µs vs {out['incremental_elsewhere_one_room_ms']:.2f} ms / "
           f"{out['incremental_elsewhere_one_room_cpu_us']:.0f} µs")
    return out


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    if hard < need:
        raise RuntimeError(f"{need} file descriptors needed, the hard limit is {hard}")


def idle_polls_run(ctx, data, db_url, users, sender, room_id, n):
    """RSS per idle keep-alive connection and per parked /sync long-poll (a fresh server on the
    same database), then the time one message takes to answer all of them."""
    raise_fd_limit(n + 200)
    my = rb.Myelin(ctx, "sync-idle", data, 0, extra="max_connections_per_ip = 0", db_url=db_url)
    socks = []
    try:
        # Warm the caches every long-poll will touch (tokens, statements, the rooms' data).
        for _ in range(2):  # the second pass finds everything cached
            sinces = {u.user_id: current_since(my.port, u) for u in users}
        base = rb.settled_rss(my.server.pid, 1.0)
        tcp0 = rb.tcp_mem_kib()
        t0 = time.time()
        socks = rb.open_idle_connections(my.port, n)
        open_s = time.time() - t0
        conns_rss = rb.settled_rss(my.server.pid, 1.0)
        tcp_conns = rb.tcp_mem_kib() - tcp0
        for i, s in enumerate(socks):
            u = users[i % len(users)]
            path = sync_path(sinces[u.user_id], IDLE_POLL_TIMEOUT_MS)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: Bearer {u.token}\r\n\r\n".encode())
        time.sleep(2.0)  # every request read, its first (empty) read job done, parked
        polls_rss = rb.settled_rss(my.server.pid, 1.0)
        tcp_polls = rb.tcp_mem_kib() - tcp0
        answered_early = n - rb.still_open(socks)  # a peek that would block: still waiting
        for s in socks:
            s.setblocking(False)
        # One message into the big room (every user is a member): every long-poll answers.
        cpu0 = server_cpu_s(my)
        c = Conn(my.port, sender.token)
        try:
            status, body, t_put0, t_put1 = c.request("PUT", send_path(room_id, "wakeall"),
                                                     message(9_999_999))
        finally:
            c.close()
        if status != 200:
            raise RuntimeError(f"send: {status} {body[:200]!r}")
        answered, last = read_all_answers(socks, t_put1, timeout=120)
        wake_cpu = server_cpu_s(my) - cpu0
    finally:
        rb.close_all(socks)
        my.stop()
    kib = 1024
    out = {"long_polls": n, "users": len(users), "open_s": open_s,
           "rss_base_kib": base["VmRSS"], "rss_conns_kib": conns_rss["VmRSS"],
           "rss_polls_kib": polls_rss["VmRSS"],
           "anon_base_kib": base["RssAnon"], "anon_polls_kib": polls_rss["RssAnon"],
           "kib_per_conn": (conns_rss["VmRSS"] - base["VmRSS"]) / n,
           "kib_per_poll_extra": (polls_rss["VmRSS"] - conns_rss["VmRSS"]) / n,
           "kib_per_poll": (polls_rss["VmRSS"] - base["VmRSS"]) / n,
           "kernel_tcp_kib_per_conn": tcp_conns / n, "kernel_tcp_kib_per_poll": tcp_polls / n,
           "threads": polls_rss["threads"],
           "answered_before_wake": answered_early, "answered_after_wake": answered,
           "wake_all_ms": last * 1e3 if last is not None else None,
           "wake_server_cpu_ms": wake_cpu * 1e3,
           "wake_server_cpu_us_per_poll": wake_cpu * 1e6 / n}
    rb.log(f"sync idle_polls: {n:,} long-polls: {out['kib_per_poll']:.2f} KiB each "
           f"(connection {out['kib_per_conn']:.2f} + waiting /sync {out['kib_per_poll_extra']:.2f};"
           f" kernel TCP {out['kernel_tcp_kib_per_poll']:.2f}); RSS {base['VmRSS'] / kib:.1f} → "
           f"{conns_rss['VmRSS'] / kib:.1f} → {polls_rss['VmRSS'] / kib:.1f} MiB; "
           f"{answered_early} answered early; one message answered {answered:,} in "
           f"{out['wake_all_ms'] or 0:.0f} ms ({out['wake_server_cpu_us_per_poll']:.0f} µs "
           f"server CPU each)")
    return out


def read_all_answers(socks, t_from, timeout):
    """Reads one HTTP answer from each socket (non-blocking, by selector); returns (how many
    were complete 200s, seconds from t_from to the last one read)."""
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    done, last = 0, None
    deadline = time.perf_counter() + timeout
    pending = len(socks)
    try:
        while pending and time.perf_counter() < deadline:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                try:
                    chunk = s.recv(262144)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                bufs[s] += chunk
                b = bufs[s]
                head, sep, body = b.partition(b"\r\n\r\n")
                complete = False
                if sep:
                    length = next((int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                                   if ln.lower().startswith(b"content-length:")), 0)
                    complete = len(body) >= length
                if complete or not chunk:
                    sel.unregister(s)
                    pending -= 1
                    if complete and head.startswith(b"HTTP/1.1 200"):
                        done += 1
                        last = time.perf_counter() - t_from
    finally:
        sel.close()
    return done, last


# ---- the whole run -------------------------------------------------------------------------------

def run(ctx, p, backend="sqlite", db_url=None):
    """Every measurement on one backend with parameters p (a dict like FULL); the results."""
    tmp = ctx.tmp / f"sync-{backend}"
    data = tmp / "data"
    tmp.mkdir(parents=True, exist_ok=True)
    out = {"backend": backend, "params": dict(p), "load_before": rb.loadavg()}
    Conn.retried = 0
    # More long-polls than the default 100 per address, all from 127.0.0.1.
    my = rb.Myelin(ctx, f"sync-{backend}", data, 0, extra="max_connections_per_ip = 0",
                   db_url=db_url)
    try:
        t0 = time.time()
        members = register_users(my.base, [f"m{i:04d}" for i in range(p["members"])])
        hub, peer = register_users(my.base, ["hub", "peer"])
        big = create_room(my.port, members[0], "big room")
        join_all(my.port, members[1:], big)
        rooms = [create_room(my.port, hub, f"room {i}") for i in range(p["rooms"])]
        join_all_rooms(my.port, peer, rooms)
        filled = fill_rooms(my.port, [hub, peer], rooms, p["room_messages"])
        out["setup_s"] = time.time() - t0
        out["setup_retries"] = Conn.retried
        rb.log(f"sync [{backend}]: set up {p['members']} members in one room, the hub in "
               f"{p['rooms']} rooms with {filled} messages, in {out['setup_s']:.1f} s "
               f"({Conn.retried} requests retried after a 503/429)")
        a, b = members[0], members[1]
        out["latency_1"] = latency_run(my, a, [b], lambda i: big, p["messages"], p["gap"],
                                       "lat1_", 1_000_000)
        out["latency_all"] = latency_run(my, a, members, lambda i: big, p["messages"], p["gap"],
                                         "latall_", 2_000_000)
        out["latency_hub"] = latency_run(my, peer, [hub], lambda i: rooms[i % len(rooms)],
                                         max(10, p["messages"] // 5), p["gap"], "lathub_",
                                         3_000_000)
        out["throughput"] = throughput_run(my, members[:p["senders"]], members, big,
                                           p["duration"], 4_000_000)
        out["initial"] = initial_run(my, hub, b, p["repeat"],
                                     ((a, big), (peer, rooms[0])))
    finally:
        my.stop()
    out["idle_polls"] = idle_polls_run(ctx, data, db_url, members, a, big, p["idle_polls"])
    out["load_after"] = rb.loadavg()
    return out


def join_all_rooms(port, user, rooms):
    c = Conn(port, user.token)
    try:
        for room in rooms:
            c.json("POST", f"{V3}/rooms/{q(room)}/join", {})
    finally:
        c.close()


def run_postgres(ctx, p):
    """run() on a throwaway PostgreSQL cluster (or MYELIN_TEST_POSTGRES_URL's, on loopback)."""
    url = os.environ.get("MYELIN_TEST_POSTGRES_URL", "")
    cluster = None
    if not url:
        if not (rb.PG_BIN / "initdb").exists():
            return {"skipped": f"PostgreSQL binaries not installed ({rb.PG_BIN}/initdb)"}
        rb.log("sync [postgres]: starting a throwaway cluster (scripts/pg-test-cluster.sh)")
        cluster, url = rb.start_pg_cluster(ctx)
    try:
        name = f"sync_bench_{os.getpid()}"
        rb.psql(url, f"CREATE DATABASE {name}")
        return run(ctx, p, "postgres", rb.pg_database_url(url, name))
    finally:
        if cluster:
            cluster.stop(grace=60)


def params(args):
    p = dict(QUICK if args.quick else FULL)
    for k in p:
        v = getattr(args, k, None)
        if v is not None:
            p[k] = v
    if p["members"] < 2 or p["senders"] > p["members"] or p["rooms"] < 1:
        raise SystemExit("need members >= 2, senders <= members, rooms >= 1")
    return p


def bench(ctx, args):
    """The sync benchmark as run_bench.py runs it (benchmark `sync`): SQLite, and PostgreSQL
    when args.postgres."""
    p = params(args)
    out = {"sqlite": run(ctx, p)}
    if getattr(args, "postgres", False):
        rb.stop_all()
        try:
            out["postgres"] = run_postgres(ctx, p)
        except Exception as e:  # noqa: BLE001  (SQLite's figures stand; say what failed)
            rb.log(f"sync [postgres] FAILED: {e}")
            out["postgres"] = {"error": str(e)}
    return out


# ---- report ------------------------------------------------------------------------------------

def f1(x, fmt="{:.2f}"):
    return "n/a" if x is None else fmt.format(x)


def report_lines(res):
    """The sync section of a report (markdown lines) from bench()'s result."""
    L = ["## /sync (issue #8 §5)\n"]
    any_p = next((r["params"] for r in res.values() if "params" in r), None)
    if any_p:
        L.append(f"`bench/sync_bench.py`: {any_p['members']} users in one public room (the big "
                 f"room); a hub user in {any_p['rooms']} rooms of 9 state events and "
                 f"{any_p['room_messages']} messages each. Long-polls use `timeout=30000` and a "
                 "timeline limit of 1000; latencies are read by a Python client (raw keep-alive "
                 "sockets, one thread per connection) on the same 2 cores, so they include its "
                 f"scheduling. One message at a time for the latencies ({any_p['messages']} "
                 f"messages, each {any_p['gap'] * 1000:.0f} ms after every receiver had the "
                 "previous one, so each long-poll waits in the notifier). Server: network threads "
                 "= cores, rate limits off. Server CPU = the myelin process's threads "
                 "(PostgreSQL's own processes are not counted). The sync answer usually "
                 "reaches the receiver as the sender reads its PUT's answer (the notifier wakes "
                 "it at the commit), so \"from the PUT's start\" is the end-to-end figure.\n")
    L.append("| backend | figure | value | detail |")
    L.append("| --- | --- | --- | --- |")
    for backend, r in res.items():
        if "error" in r:
            L.append(f"| {backend} | failed | `{r['error'][:200]}` | |")
            continue
        if "skipped" in r:
            L.append(f"| {backend} | not measured | {r['skipped']} | |")
            continue
        if r.get("setup_retries"):
            L.append(f"| {backend} | set-up | {r['setup_retries']} requests answered 503/429 "
                     "and retried | the server gave up on conflicting transactions |")
        for key, what in (("latency_1", "send → sync, 1 receiver"),
                          ("latency_all", f"send → sync, {r['params']['members']} members polling"),
                          ("latency_hub", f"send → sync, receiver in {r['params']['rooms']} rooms")):
            x = r[key]
            L.append(f"| {backend} | {what} | p50 **{f1(x['from_put_done']['p50_ms'])}** / p99 "
                     f"**{f1(x['from_put_done']['p99_ms'])}** ms after the PUT's answer | from "
                     f"the PUT's start {f1(x['from_put_start']['p50_ms'])} / "
                     f"{f1(x['from_put_start']['p99_ms'])} ms; PUT itself "
                     f"{f1(x['put']['p50_ms'])} / {f1(x['put']['p99_ms'])} ms; last receiver "
                     f"{f1(x['last_receiver_from_put_done']['p50_ms'])} / "
                     f"{f1(x['last_receiver_from_put_done']['p99_ms'])} ms; "
                     f"{x['messages']} messages × {x['receivers']} receivers "
                     f"({x['before_put_done']} answers read before the PUT's); server CPU "
                     f"{f1(x['server_cpu_ms_per_message'])} ms/message |")
        t = r["throughput"]
        L.append(f"| {backend} | messages/s, one room of {t['receivers']} members all polling | "
                 f"**{t['sent_per_s']:,.0f} sent/s**, **{t['delivered_per_s_in_window']:,.0f} "
                 f"delivered events/s** | {t['senders']} senders back to back for "
                 f"{t['window_s']:.1f} s; delivered {t['delivered']:,} of {t['expected']:,} "
                 f"({'all' if t['delivered'] == t['expected'] else 'NOT all'}; every message "
                 f"had reached every member {t['catch_up_s']:.2f} s after the last send"
                 f"{'' if t['caught_up'] else ' (NOT within 30 s)'}); delivery p50 / p99 "
                 f"{f1(t['delivery_from_put_done']['p50_ms'], '{:.1f}')} / "
                 f"{f1(t['delivery_from_put_done']['p99_ms'], '{:.1f}')} ms; /sync answer p50 / "
                 f"p99 {f1(t['sync_answer']['p50_ms'], '{:.1f}')} / "
                 f"{f1(t['sync_answer']['p99_ms'], '{:.1f}')} ms, {t['events_per_answer']:.1f} "
                 f"events each ({t['limited_answers']} limited); PUT p50 / p99 "
                 f"{f1(t['put']['p50_ms'], '{:.1f}')} / {f1(t['put']['p99_ms'], '{:.1f}')} ms; "
                 f"server {t['server_cores_busy']:.2f} cores busy, "
                 f"{f1(t['server_cpu_us_per_delivered'], '{:,.0f}')} µs CPU per delivered event "
                 f"({f1(t['server_cpu_us_per_sent'], '{:,.0f}')} per message sent); client "
                 f"{t['client_cpu_share']:.2f} cores |")
        i = r["initial"]
        L.append(f"| {backend} | initial sync, {i['rooms']} rooms | **{i['ms']:.1f} ms**, "
                 f"**{i['bytes']:,} bytes** | median of {len(i['runs'])} "
                 f"({', '.join('{:.0f}'.format(x['ms']) for x in i['runs'])} ms); {i['state_events']:,} "
                 f"state + {i['timeline_events']:,} timeline events; server CPU "
                 f"{i['server_cpu_ms']:.1f} ms |")
        for key, what in (("empty", "incremental sync, nothing new (timeout 0)"),
                          ("elsewhere", "incremental sync, a new event in another room "
                                        "(timeout 0)")):
            L.append(f"| {backend} | {what} | **{i[f'incremental_{key}_ms']:.2f} ms** in "
                     f"{i['rooms']} rooms, {i[f'incremental_{key}_one_room_ms']:.2f} ms in 1 | "
                     f"server CPU {i[f'incremental_{key}_cpu_us']:,.0f} µs vs "
                     f"{i[f'incremental_{key}_one_room_cpu_us']:,.0f} µs (wall: median of 50; "
                     "CPU: mean) |")
        d = r["idle_polls"]
        L.append(f"| {backend} | memory per idle long-poll | **{d['kib_per_poll']:.1f} KiB** "
                 f"(server RSS) | {d['long_polls']:,} parked `/sync` long-polls over "
                 f"{d['users']} users: the connection {d['kib_per_conn']:.1f} KiB + the waiting "
                 f"request {d['kib_per_poll_extra']:.1f} KiB; RSS {d['rss_base_kib'] / 1024:.1f} "
                 f"→ {d['rss_conns_kib'] / 1024:.1f} → {d['rss_polls_kib'] / 1024:.1f} MiB; "
                 f"kernel TCP {d['kernel_tcp_kib_per_poll']:.1f} KiB each; "
                 f"{d['answered_before_wake']} answered before the wake |")
        L.append(f"| {backend} | one message wakes {d['long_polls']:,} long-polls | "
                 f"**{f1(d['wake_all_ms'], '{:,.0f}')} ms** until the last answer | "
                 f"{d['answered_after_wake']:,} answered 200; server CPU "
                 f"{d['wake_server_cpu_ms']:,.0f} ms ({d['wake_server_cpu_us_per_poll']:,.0f} µs "
                 "per long-poll) |")
    L.append("")
    return L


def summary_rows(res):
    """Headline rows for run_bench.py's table (its columns)."""
    rows = []
    r = res.get("sqlite", {})
    if "latency_1" not in r:
        return rows
    blank = {"ceiling": "", "ratio": "", "cpu": "", "errors": "", "target": ""}
    for key, mode in (("latency_1", "1 receiver"),
                      ("latency_all", f"{r['params']['members']} members polling")):
        x = r[key]
        rows.append(dict(blank, bench="sync: send → sync", mode=mode,
                         server=f"{f1(x['from_put_done']['p50_ms'])} / "
                                f"{f1(x['from_put_done']['p99_ms'])} ms after the PUT",
                         latency=f"from PUT start {f1(x['from_put_start']['p50_ms'])} / "
                                 f"{f1(x['from_put_start']['p99_ms'])} ms",
                         cpu=f"{f1(x['server_cpu_ms_per_message'])} ms/message"))
    t = r["throughput"]
    rows.append(dict(blank, bench="sync: one room", mode=f"{t['receivers']} members, "
                     f"{t['senders']} senders",
                     server=f"{t['sent_per_s']:,.0f} sent/s, {t['delivered_per_s_in_window']:,.0f} "
                            "delivered events/s",
                     latency=f"/sync answer p99 {f1(t['sync_answer']['p99_ms'], '{:.1f}')} ms",
                     cpu=f"{f1(t['server_cpu_us_per_delivered'], '{:,.0f}')} per delivered event",
                     errors=t["expected"] - t["delivered"]))
    i = r["initial"]
    rows.append(dict(blank, bench="sync: initial", mode=f"{i['rooms']} rooms",
                     server=f"{i['ms']:.1f} ms, {i['bytes']:,} bytes",
                     latency=f"incremental after an event elsewhere "
                             f"{i['incremental_elsewhere_ms']:.2f} ms",
                     cpu=f"{i['server_cpu_ms']:.1f} ms"))
    d = r["idle_polls"]
    rows.append(dict(blank, bench="sync: idle long-poll", mode=f"{d['long_polls']:,} held",
                     server=f"{d['kib_per_poll']:.1f} KiB each (server RSS)",
                     latency=f"one message wakes all in {f1(d['wake_all_ms'], '{:,.0f}')} ms",
                     errors=d["answered_before_wake"] + d["long_polls"] - d["answered_after_wake"]))
    return rows


# ---- standalone ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    for k, v in FULL.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None,
                        help=f"(default {v}, --quick {QUICK[k]})")
    ap.add_argument("--postgres", action="store_true",
                    help="also on a throwaway PostgreSQL cluster (scripts/pg-test-cluster.sh)")
    ap.add_argument("--output", default=None,
                    help="markdown report (default bench/results/SYNC.md; .json beside it)")
    args = ap.parse_args()
    if not rb.MYELIN.exists():
        sys.exit(f"myelin not built: {rb.MYELIN} is missing (run `make build`)")
    ctx = rb.Ctx()
    ctx.tmp = Path(tempfile.mkdtemp(prefix="myelin-sync-bench-",
                                    dir=os.environ.get("MYELIN_BENCH_TMP") or None))
    output = Path(args.output) if args.output else rb.RESULTS / "SYNC.md"
    output.parent.mkdir(parents=True, exist_ok=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started, t0 = datetime.datetime.now().isoformat(timespec="seconds"), time.time()
    try:
        res = bench(ctx, args)
    except KeyboardInterrupt as e:
        rb.log(f"interrupted ({e})")
        return 130
    finally:
        rb.stop_all()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    meta = {"started": started, "elapsed_s": time.time() - t0,
            "commit": rb.git("rev-parse", "--short", "HEAD") or "unknown",
            "command": " ".join(["bench/sync_bench.py"] + sys.argv[1:])}
    output.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
    lines = [f"# Myelin /sync benchmark — one run\n",
             f"Run {started} ({meta['elapsed_s']:.0f} s), `{meta['command']}`, commit "
             f"`{meta['commit']}`, {rb.CORES} cores, load average {rb.loadavg()} at the end.\n"]
    output.write_text("\n".join(lines + report_lines(res)))
    print("\n".join(report_lines(res)))
    print(f"Report: {output}")
    return 1 if any("error" in v for v in res.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
