"""A real client against the server: matrix-nio's AsyncClient (r0 paths, query-string access
tokens, m.login.dummy registration without a UIA session)."""

import asyncio

import nio
from nio.responses import WhoamiResponse

from client_helpers import R0, mxid, unique_name, unique_password, whoami

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
