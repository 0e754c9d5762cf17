"""A real client against the server: matrix-nio's AsyncClient (r0 paths, query-string access
tokens, m.login.dummy registration without a UIA session); below, two nio users on sync_forever
with access tokens that expire mid-way, typing, receipts and read markers."""

import asyncio
import contextlib

import aiohttp
import nio
import pytest
from nio.responses import WhoamiResponse

import myelin_harness as h
from client_helpers import R0, V3, login_ok, mxid, register_ok, unique_name, unique_password, \
    whoami
from spec_traffic import check_exchanges

TIMEOUT = 30  # seconds for a whole scenario


def client_config() -> nio.AsyncClientConfig:
    # No retries (a refused connection fails at once), no E2E store, short request timeout.
    return nio.AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False,
                                 max_timeouts=0, max_limit_exceeded=0, request_timeout=10)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def expect(resp, cls):
    assert isinstance(resp, cls), \
        f"expected nio.{cls.__name__}, got {type(resp).__name__}: " \
        f"{getattr(resp, 'status_code', '')} {getattr(resp, 'message', resp)}"
    return resp


def test_nio_register_whoami_logout_login(shared_server):
    base = shared_server.base
    localpart = unique_name("nio")
    password = unique_password()

    async def scenario():
        client = nio.AsyncClient(base, config=client_config())
        try:
            info = expect(await client.login_info(), nio.LoginInfoResponse)
            assert "m.login.password" in info.flows, info.flows

            reg = expect(await client.register(localpart, password, device_name="nio test"),
                         nio.RegisterResponse)
            assert reg.user_id == mxid(localpart), reg
            assert reg.device_id and reg.access_token, reg
            assert client.access_token == reg.access_token

            me = expect(await client.whoami(), WhoamiResponse)
            assert me.user_id == reg.user_id
            reg_token = client.access_token
            expect(await client.logout(), nio.LogoutResponse)
        finally:
            await client.close()

        client = nio.AsyncClient(base, user=localpart, config=client_config())
        try:
            log = expect(await client.login(password, device_name="nio login"),
                         nio.LoginResponse)
            assert log.user_id == mxid(localpart), log
            assert log.device_id and log.device_id != reg.device_id, log
            me = expect(await client.whoami(), WhoamiResponse)
            assert me.user_id == mxid(localpart)
            login_token = client.access_token
            expect(await client.logout(), nio.LogoutResponse)
        finally:
            await client.close()
        return reg, reg_token, log, login_token

    reg, reg_token, log, login_token = run(scenario())

    # Cross-check with plain HTTP: the device ids match and both tokens are gone after logout.
    for token in (reg_token, login_token):
        r = whoami(shared_server, token, prefix=R0)
        assert r.status_code == 401 and r.json().get("errcode") == "M_UNKNOWN_TOKEN", \
            f"token still valid after nio's logout: {r.status_code} {r.text}"


def test_nio_login_with_full_mxid_and_device_id(shared_server):
    base = shared_server.base
    localpart = unique_name("niomxid")
    password = unique_password()

    async def scenario():
        client = nio.AsyncClient(base, config=client_config())
        try:
            expect(await client.register(localpart, password), nio.RegisterResponse)
        finally:
            await client.close()
        client = nio.AsyncClient(base, user=mxid(localpart), device_id="NIODEVICE",
                                 config=client_config())
        try:
            log = expect(await client.login(password), nio.LoginResponse)
            token = client.access_token
            return log, token
        finally:
            await client.close()

    log, token = run(scenario())
    assert log.user_id == mxid(localpart) and log.device_id == "NIODEVICE", log
    r = whoami(shared_server, token, prefix=R0, via="query")
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == mxid(localpart) and r.json()["device_id"] == "NIODEVICE"


def test_nio_wrong_password_is_a_login_error(shared_server):
    base = shared_server.base
    localpart = unique_name("niowrong")
    password = unique_password()

    async def scenario():
        client = nio.AsyncClient(base, config=client_config())
        try:
            expect(await client.register(localpart, password), nio.RegisterResponse)
        finally:
            await client.close()
        client = nio.AsyncClient(base, user=localpart, config=client_config())
        try:
            return await client.login(password + "-wrong")
        finally:
            await client.close()

    resp = run(scenario())
    err = expect(resp, nio.LoginError)
    assert err.status_code == "M_FORBIDDEN", err


def test_nio_rooms_and_sync(shared_server):
    """Two nio clients: create, invite, join, exchange a message, all seen through nio's own
    /sync parsing (which validates the answers with its schemas); bob's long-poll is woken by
    alice's message."""
    base = shared_server.base

    async def scenario():
        alice = nio.AsyncClient(base, config=client_config())
        bob = nio.AsyncClient(base, config=client_config())
        try:
            expect(await alice.register(unique_name("nioa"), unique_password()),
                   nio.RegisterResponse)
            expect(await bob.register(unique_name("niob"), unique_password()),
                   nio.RegisterResponse)
            expect(await bob.sync(timeout=0), nio.SyncResponse)
            created = expect(await alice.room_create(name="nio room", invite=[bob.user_id]),
                             nio.RoomCreateResponse)
            synced = expect(await bob.sync(timeout=5000), nio.SyncResponse)
            assert created.room_id in synced.rooms.invite, synced.rooms
            expect(await bob.join(created.room_id), nio.JoinResponse)
            expect(await bob.sync(timeout=0), nio.SyncResponse)
            assert created.room_id in bob.rooms

            poll = asyncio.ensure_future(bob.sync(timeout=10000))
            await asyncio.sleep(0.5)
            assert not poll.done()
            started = asyncio.get_running_loop().time()
            expect(await alice.room_send(created.room_id, "m.room.message",
                                         {"msgtype": "m.text", "body": "hi bob"}),
                   nio.RoomSendResponse)
            synced = expect(await poll, nio.SyncResponse)
            assert asyncio.get_running_loop().time() - started < 9
            events = synced.rooms.join[created.room_id].timeline.events
            assert [e.body for e in events if isinstance(e, nio.RoomMessageText)] == ["hi bob"]
            assert bob.rooms[created.room_id].display_name == "nio room"
        finally:
            await alice.close()
            await bob.close()

    run(scenario())


# ------------------------------------------------------------------------------------------
# Two nio users on sync_forever with access tokens that expire in the middle (issue #8 §4)
# ------------------------------------------------------------------------------------------
#
# matrix-nio 0.20.1 (Debian) knows nothing of refresh tokens: login() never asks for one and an
# expired access token is just an M_UNKNOWN_TOKEN error response. So these tests log in over
# plain HTTP with refresh_token=true, hand the session to nio (restore_login), and the client
# subclass below refreshes by itself: it calls POST /refresh and sets client.access_token, once
# per expired token (refreshes are serialised; a refresh token is never presented twice), then
# repeats the request: inside sync() (so sync_forever's long-poll loop survives the expiry) and
# around every other call through `call()`. Every answer nio received is recorded and validated
# against the spec's schemas (spec_traffic.check_exchanges) at the end of each test.


SHORT_TOKEN_LIFETIME_S = 3
LONG_POLL_MS = 10000
WAIT_S = 12  # for one thing to show up through sync_forever


class RefreshingClient(nio.AsyncClient):
    """nio's AsyncClient with what 0.20.1 lacks: refresh on M_UNKNOWN_TOKEN, and a record of
    every answer ({"method", "path", "status", "body"}) for the spec check."""

    def __init__(self, base: str, refresh_token: str):
        super().__init__(base, config=client_config())
        self.refresh_token = refresh_token
        self.exchanges: list[dict] = []
        self.refreshes = 0
        self.expired_seen = 0
        self._refresh_lock = asyncio.Lock()

    async def create_matrix_response(self, response_class, transport_response, data=None):
        resp = await super().create_matrix_response(response_class, transport_response, data)
        try:
            body = await transport_response.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = None
        self.exchanges.append({"method": transport_response.method,
                               "path": transport_response.url.raw_path,
                               "status": transport_response.status, "body": body})
        return resp

    async def receive_response(self, response) -> None:
        # nio 0.20.1 takes soft_logout as a logout and clears access_token, so that the next
        # call (sync_forever's among them) raises "Not logged in". A refreshing client keeps
        # the token until refresh_after() replaces it.
        if self._is_expired(response):
            return
        await super().receive_response(response)

    @staticmethod
    def _is_expired(resp) -> bool:
        return isinstance(resp, nio.ErrorResponse) and resp.status_code == "M_UNKNOWN_TOKEN"

    async def refresh_after(self, expired_token: str) -> None:
        """POST /refresh unless another task already replaced `expired_token`."""
        async with self._refresh_lock:
            if self.access_token != expired_token:
                return
            async with aiohttp.ClientSession() as http:
                async with http.post(self.homeserver + V3 + "/refresh",
                                     json={"refresh_token": self.refresh_token}) as r:
                    body = await r.json(content_type=None)
                    self.exchanges.append({"method": "POST", "path": V3 + "/refresh",
                                           "status": r.status, "body": body})
            assert r.status == 200, f"refresh failed: {r.status} {body}"
            self.access_token = body["access_token"]
            self.refresh_token = body["refresh_token"]
            self.refreshes += 1

    def _expired(self, resp) -> bool:
        expired = self._is_expired(resp)
        if expired:
            assert resp.soft_logout, f"an expired token must answer soft_logout: {resp}"
            self.expired_seen += 1
        return expired

    async def call(self, method, *args, **kwargs):
        """await method(*args, **kwargs), refreshing and repeating once if the token expired."""
        token = self.access_token
        resp = await method(*args, **kwargs)
        if self._expired(resp):
            await self.refresh_after(token)
            resp = await method(*args, **kwargs)
        return resp

    async def sync(self, *args, **kwargs):
        token = self.access_token
        resp = await super().sync(*args, **kwargs)
        if self._expired(resp):
            await self.refresh_after(token)
            resp = await super().sync(*args, **kwargs)
        return resp


async def until(predicate, what: str, timeout: float = WAIT_S):
    """Polls `predicate()` (the clients' callbacks fill what it reads) until it is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


class Seen:
    """What a client's sync_forever callbacks delivered."""

    def __init__(self, client: RefreshingClient):
        self.messages: list[nio.RoomMessageText] = []
        self.typing: list[nio.TypingNoticeEvent] = []
        self.receipts: list[nio.Receipt] = []
        self.fully_read: list[str] = []
        client.add_event_callback(self._message, nio.RoomMessageText)
        client.add_ephemeral_callback(self._ephemeral, (nio.TypingNoticeEvent, nio.ReceiptEvent))
        client.add_room_account_data_callback(self._account_data, nio.FullyReadEvent)

    async def _message(self, _room, event):
        self.messages.append(event)

    async def _ephemeral(self, _room, event):
        if isinstance(event, nio.TypingNoticeEvent):
            self.typing.append(event)
        else:
            self.receipts.extend(event.receipts)

    async def _account_data(self, _room, event):
        self.fully_read.append(event.event_id)

    def bodies(self) -> list[str]:
        return [m.body for m in self.messages]


@pytest.fixture(scope="module")
def short_token_server(tmp_path_factory, myelin_binary):
    s = h.start_server(tmp_path_factory.mktemp("nio_refresh"), scope="module", tokens={
        "access_token_lifetime": f"{SHORT_TOKEN_LIFETIME_S}s", "session_idle_timeout": "1h"})
    yield s
    problems = h.stop_servers([s], check=True)
    assert not problems, problems


@contextlib.asynccontextmanager
async def nio_pair(server):
    """alice and bob (refresh-capable sessions) in one room, both on sync_forever; yields
    (alice, bob, seen_by_alice, seen_by_bob, room_id). At the end: every answer both clients
    got matches the spec."""
    clients, tasks = [], []
    try:
        for stem in ("nioalice", "niobob"):
            reg = register_ok(server, unique_name(stem))
            # nio 0.20.1's login() cannot ask for a refresh token: log in over HTTP instead.
            s = login_ok(server, reg.localpart, reg.password, refresh_token=True)
            assert s.refresh_token and s.expires_in_ms == SHORT_TOKEN_LIFETIME_S * 1000, s.body
            c = RefreshingClient(server.base, s.refresh_token)
            c.restore_login(s.user_id, s.device_id, s.access_token)
            clients.append(c)
        alice, bob = clients
        seen_a, seen_b = Seen(alice), Seen(bob)
        for c in clients:
            tasks.append(asyncio.ensure_future(c.sync_forever(timeout=LONG_POLL_MS)))
        created = expect(await alice.call(alice.room_create, name="nio refresh room"),
                         nio.RoomCreateResponse)
        room_id = created.room_id
        expect(await alice.call(alice.room_invite, room_id, bob.user_id),
               nio.RoomInviteResponse)
        await until(lambda: room_id in bob.invited_rooms, "bob to see the invite")
        expect(await bob.call(bob.join, room_id), nio.JoinResponse)
        await until(lambda: room_id in alice.rooms
                    and bob.user_id in alice.rooms[room_id].users, "alice to see bob join")
        await until(lambda: room_id in bob.rooms, "bob to see his own join")
        yield alice, bob, seen_a, seen_b, room_id
        for c in clients:
            assert not [t for t in tasks if t.done()], \
                f"sync_forever stopped: {[t.exception() for t in tasks if t.done()]}"
        report = check_exchanges([x for c in clients for x in c.exchanges])
        assert not report.failures, "\n\n".join(report.failures)
        assert not report.unknown and not report.undocumented, (report.unknown,
                                                                 report.undocumented)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for c in clients:
            await c.close()


def run_long(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def test_nio_messages_through_sync_forever_while_tokens_expire(short_token_server):
    """Messages both ways through the long-poll loop; then both tokens expire while the
    clients sit in their long-polls, the next requests meet M_UNKNOWN_TOKEN (soft logout), the
    client refreshes and repeats them, and messages still flow both ways."""

    async def scenario():
        async with nio_pair(short_token_server) as (alice, bob, seen_a, seen_b, room_id):
            for sender, seen, body in ((alice, seen_b, "hi bob"), (bob, seen_a, "hi alice")):
                expect(await sender.call(sender.room_send, room_id, "m.room.message",
                                         {"msgtype": "m.text", "body": body}),
                       nio.RoomSendResponse)
                await until(lambda: body in seen.bodies(), f"{body!r} through sync_forever")
            first_tokens = (alice.access_token, bob.access_token)

            await asyncio.sleep(SHORT_TOKEN_LIFETIME_S + 1.5)
            for sender, seen, body in ((alice, seen_b, "still here, bob"),
                                       (bob, seen_a, "still here, alice")):
                expect(await sender.call(sender.room_send, room_id, "m.room.message",
                                         {"msgtype": "m.text", "body": body}),
                       nio.RoomSendResponse)
                await until(lambda: body in seen.bodies(), f"{body!r} after the expiry")
            for c, first in zip((alice, bob), first_tokens):
                assert c.expired_seen >= 1 and c.refreshes >= 1, (c.expired_seen, c.refreshes)
                assert c.access_token != first
            # The old token is dead now that the new one was used.
            r = whoami(short_token_server, first_tokens[0])
            assert r.status_code == 401, r.text

    run_long(scenario())


def test_nio_typing_through_sync_forever(short_token_server):
    async def scenario():
        async with nio_pair(short_token_server) as (alice, bob, _seen_a, seen_b, room_id):
            expect(await alice.call(alice.room_typing, room_id, True, 20000),
                   nio.RoomTypingResponse)
            await until(lambda: any(alice.user_id in t.users for t in seen_b.typing),
                        "bob to see alice typing")
            assert alice.user_id in bob.rooms[room_id].typing_users
            count = len(seen_b.typing)
            expect(await alice.call(alice.room_typing, room_id, False),
                   nio.RoomTypingResponse)
            await until(lambda: any(alice.user_id not in t.users
                                    for t in seen_b.typing[count:]),
                        "bob to see alice stop typing")

    run_long(scenario())


def test_nio_read_receipt_through_sync_forever(short_token_server):
    """POST /receipt/m.read/{eventId} by bob reaches alice as an m.receipt ephemeral event."""

    async def scenario():
        async with nio_pair(short_token_server) as (alice, bob, seen_a, seen_b, room_id):
            sent = expect(await alice.call(alice.room_send, room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": "read me"}),
                          nio.RoomSendResponse)
            await until(lambda: "read me" in seen_b.bodies(), "bob to get the message")
            expect(await bob.call(bob.update_receipt_marker, room_id, sent.event_id),
                   nio.UpdateReceiptMarkerResponse)
            await until(lambda: any(r.event_id == sent.event_id and r.user_id == bob.user_id
                                    and r.receipt_type == "m.read" for r in seen_a.receipts),
                        "alice to get bob's m.read receipt")

    run_long(scenario())


def test_nio_read_markers_through_sync_forever(short_token_server):
    """POST /read_markers: m.fully_read lands in bob's own room account data, and the m.read
    receipt reaches alice."""

    async def scenario():
        async with nio_pair(short_token_server) as (alice, bob, seen_a, seen_b, room_id):
            sent = expect(await alice.call(alice.room_send, room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": "mark me"}),
                          nio.RoomSendResponse)
            await until(lambda: "mark me" in seen_b.bodies(), "bob to get the message")
            expect(await bob.call(bob.room_read_markers, room_id, sent.event_id, sent.event_id),
                   nio.RoomReadMarkersResponse)
            await until(lambda: sent.event_id in seen_b.fully_read,
                        "bob's m.fully_read in his room account data")
            await until(lambda: any(r.event_id == sent.event_id and r.user_id == bob.user_id
                                    for r in seen_a.receipts),
                        "alice to get bob's m.read receipt")

    run_long(scenario())
