// Two users on matrix-js-sdk against a Myelin server (issue #8 §4), run by
// tests/integration/test_matrix_js_sdk.py:
//
//   node scenario.mjs --base http://127.0.0.1:PORT --out results.jsonl [--token-lifetime-ms N]
//
// Every step is one line {"kind":"step","name":...,"ok":bool,"error":...,"detail":{...}} in the
// --out file; every HTTP exchange the SDK made is one line {"kind":"http","who":...,"method":...,
// "path":...,"status":...,"body":...} (the SDK's own fetch, wrapped through its `fetchFn` option),
// so that the Python side validates each response body against the spec's schemas. A failed
// step does not stop the steps that do not depend on it: typing and receipts come last and
// fail on their own. Crypto is off (no initRustCrypto). Exit status 0 once all steps ran, whatever
// their outcome; 2 on a usage error. MYELIN_JS_LOG=debug|info|warn sets the SDK's log level.

import { writeFileSync, appendFileSync } from "node:fs";
import {
  ClientEvent,
  HttpApiEvent,
  ReceiptType,
  RoomEvent,
  RoomMemberEvent,
  createClient,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
if (!args.base || !args.out) {
  console.error("usage: node scenario.mjs --base URL --out FILE [--token-lifetime-ms N]");
  process.exit(2);
}
const BASE = args.base.replace(/\/$/, "");
const OUT = args.out;
const TOKEN_LIFETIME_MS = Number(args["token-lifetime-ms"] ?? 4000);
const WAIT_MS = 15000; // for one thing to show up through /sync
const RUN = Math.random().toString(36).slice(2, 8);

logger.setLevel(process.env.MYELIN_JS_LOG ?? "warn");
writeFileSync(OUT, "");

function emit(record) {
  appendFileSync(OUT, JSON.stringify(record) + "\n");
}

// ---------------------------------------------------------------------------------- HTTP record

// The SDK's fetch, with each exchange recorded: method, path, query (without any access_token),
// status and the JSON body (tokens in bodies are kept: the file is the test's own).
function recordingFetch(who) {
  return async (input, init = {}) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const method = (init.method ?? "GET").toUpperCase();
    const response = await fetch(input, init);
    let body = null;
    let text = "";
    try {
      text = await response.clone().text();
      body = text === "" ? null : JSON.parse(text);
    } catch {
      body = { unparsable: text.slice(0, 500) };
    }
    emit({
      kind: "http",
      who,
      method,
      path: url.pathname,
      query: Object.fromEntries([...url.searchParams].filter(([k]) => k !== "access_token")),
      status: response.status,
      content_type: response.headers.get("content-type"),
      body,
    });
    return response;
  };
}

// ---------------------------------------------------------------------------------- steps

const results = new Map(); // step name -> ok

// Runs one step; `needs` are earlier steps it depends on (a failed one fails this step at once).
async function step(name, needs, fn) {
  const missing = needs.filter((n) => results.get(n) !== true);
  const started = Date.now();
  if (missing.length > 0) {
    results.set(name, false);
    emit({ kind: "step", name, ok: false, error: `not run: needs ${missing.join(", ")}` });
    return;
  }
  try {
    const detail = (await fn()) ?? {};
    results.set(name, true);
    emit({ kind: "step", name, ok: true, ms: Date.now() - started, detail });
  } catch (e) {
    results.set(name, false);
    const error = e?.errcode
      ? `${e.httpStatus} ${e.errcode}: ${e.data?.error ?? e.message}`
      : String(e?.stack ?? e);
    emit({ kind: "step", name, ok: false, ms: Date.now() - started, error });
  }
}

// Resolves with the value `test` returns (neither undefined nor false) at once or on a later
// emission of any of `events` on `emitter` (ClientEvent.Sync fires after every sync the client
// processed, so a test of the client's state is re-checked then); rejects after `ms`.
function waitFor(emitter, events, test, what, ms = WAIT_MS) {
  const names = Array.isArray(events) ? events : [events];
  return new Promise((resolve, reject) => {
    let now;
    try {
      now = test();
    } catch (e) {
      return reject(e);
    }
    if (now !== undefined && now !== false) return resolve(now);
    const stop = () => names.forEach((n) => emitter.off(n, listener));
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    function listener(...eventArgs) {
      let value;
      try {
        value = test(...eventArgs);
      } catch (e) {
        value = e;
      }
      if (value instanceof Error) {
        clearTimeout(timer);
        stop();
        reject(value);
      } else if (value !== undefined && value !== false) {
        clearTimeout(timer);
        stop();
        resolve(value);
      }
    }
    names.forEach((n) => emitter.on(n, listener));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------- users

const users = {
  alice: { localpart: `js_alice_${RUN}`, password: `pw-${RUN}-alice-Zq!` },
  bob: { localpart: `js_bob_${RUN}`, password: `pw-${RUN}-bob-Zq!` },
};

// Registration as a client does it without a UIA library: the first POST /register answers
// 401 with the flows and a session, the second completes m.login.dummy in that session.
async function register(who) {
  const u = users[who];
  const anon = createClient({ baseUrl: BASE, fetchFn: recordingFetch(who) });
  let session;
  let flows;
  try {
    await anon.registerRequest({ username: u.localpart, password: u.password });
    throw new Error("POST /register without auth succeeded: expected the UIA 401");
  } catch (e) {
    if (e.httpStatus !== 401 || !e.data?.session) throw e;
    session = e.data.session;
    flows = e.data.flows;
  }
  if (!flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy")) {
    throw new Error(`no m.login.dummy flow: ${JSON.stringify(flows)}`);
  }
  const reg = await anon.registerRequest({
    username: u.localpart,
    password: u.password,
    initial_device_display_name: `js-sdk ${who} (register)`,
    auth: { type: "m.login.dummy", session },
  });
  u.userId = reg.user_id;
  return { user_id: reg.user_id, flows };
}

// POST /login with refresh_token: true, as a client that supports refresh does.
async function login(who) {
  const u = users[who];
  const anon = createClient({ baseUrl: BASE, fetchFn: recordingFetch(who) });
  const res = await anon.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: u.localpart },
    password: u.password,
    refresh_token: true,
    initial_device_display_name: `js-sdk ${who}`,
  });
  if (!res.refresh_token) throw new Error(`no refresh_token in ${JSON.stringify(res)}`);
  if (typeof res.expires_in_ms !== "number") throw new Error("no expires_in_ms in the login");
  u.refreshes = [];
  u.loggedOut = [];
  // The SDK calls this when a request met M_UNKNOWN_TOKEN (the first token's expiry is not
  // known to it) or when the expiry it was told about is near; it then retries the request.
  const tokenRefreshFunction = async (refreshToken) => {
    const http = createClient({ baseUrl: BASE, fetchFn: recordingFetch(who) });
    const r = await http.refreshToken(refreshToken);
    u.refreshes.push({ at: Date.now(), expires_in_ms: r.expires_in_ms });
    return {
      accessToken: r.access_token,
      refreshToken: r.refresh_token ?? refreshToken,
      expiry: typeof r.expires_in_ms === "number" ? new Date(Date.now() + r.expires_in_ms) : undefined,
    };
  };
  u.client = createClient({
    baseUrl: BASE,
    userId: res.user_id,
    deviceId: res.device_id,
    accessToken: res.access_token,
    refreshToken: res.refresh_token,
    tokenRefreshFunction,
    fetchFn: recordingFetch(who),
  });
  u.client.on(HttpApiEvent.SessionLoggedOut, (err) => u.loggedOut.push(String(err?.errcode)));
  u.firstAccessToken = res.access_token;
  return { device_id: res.device_id, expires_in_ms: res.expires_in_ms };
}

async function startSync(who) {
  const c = users[who].client;
  const states = [];
  c.on(ClientEvent.Sync, (state, _prev, data) => {
    states.push(state);
    if (state === "ERROR") users[who].syncError = String(data?.error?.errcode ?? data?.error);
  });
  users[who].syncStates = states;
  const prepared = waitFor(c, ClientEvent.Sync, (s) => s === "PREPARED" || undefined,
    `${who}'s first sync (states so far: ${states.join(",")})`);
  await c.startClient({ initialSyncLimit: 10 }); // long-polls with the SDK's default 30 s timeout
  await prepared;
  return { states };
}

function timelineBody(who, roomId, body) {
  const c = users[who].client;
  const find = () => c.getRoom(roomId)?.getLiveTimeline().getEvents()
    .find((e) => e.getType() === "m.room.message" && e.getContent().body === body);
  return waitFor(c, [RoomEvent.Timeline, ClientEvent.Sync], () => find() ?? undefined,
    `${who} to see "${body}" in ${roomId}`);
}

// ---------------------------------------------------------------------------------- scenario

const room = {};

await step("register_alice", [], () => register("alice"));
await step("register_bob", [], () => register("bob"));
await step("login_alice_with_refresh_token", ["register_alice"], () => login("alice"));
await step("login_bob_with_refresh_token", ["register_bob"], () => login("bob"));
await step("initial_sync_alice", ["login_alice_with_refresh_token"], () => startSync("alice"));
await step("initial_sync_bob", ["login_bob_with_refresh_token"], () => startSync("bob"));

await step("create_room", ["initial_sync_alice"], async () => {
  const alice = users.alice.client;
  const res = await alice.createRoom({ name: `js room ${RUN}`, preset: "private_chat" });
  room.id = res.room_id;
  await waitFor(alice, ClientEvent.Sync, () =>
    alice.getRoom(room.id)?.getMyMembership() === "join" || undefined,
  "alice to see her new room through /sync");
  return { room_id: room.id };
});

await step("invite_seen_by_bob", ["create_room", "initial_sync_bob"], async () => {
  await users.alice.client.invite(room.id, users.bob.userId);
  const bob = users.bob.client;
  await waitFor(bob, ClientEvent.Sync, () =>
    bob.getRoom(room.id)?.getMyMembership() === "invite" || undefined,
  "bob to see the invite through /sync");
  return { name: bob.getRoom(room.id).name };
});

await step("join_seen_by_alice", ["invite_seen_by_bob"], async () => {
  await users.bob.client.joinRoom(room.id);
  const alice = users.alice.client;
  await waitFor(alice, ClientEvent.Sync, () =>
    alice.getRoom(room.id)?.getMember(users.bob.userId)?.membership === "join" || undefined,
  "alice to see bob's join through /sync");
  const bob = users.bob.client;
  await waitFor(bob, ClientEvent.Sync, () =>
    bob.getRoom(room.id)?.getMyMembership() === "join" || undefined, "bob's own join");
  return {};
});

await step("message_alice_to_bob", ["join_seen_by_alice"], async () => {
  const body = `hello bob ${RUN}`;
  const seen = timelineBody("bob", room.id, body);
  const res = await users.alice.client.sendMessage(room.id, { msgtype: "m.text", body });
  const ev = await seen;
  if (ev.getId() !== res.event_id) throw new Error(`bob saw ${ev.getId()}, sent ${res.event_id}`);
  if (ev.getSender() !== users.alice.userId) throw new Error(`sender ${ev.getSender()}`);
  return { event_id: res.event_id };
});

await step("message_bob_to_alice", ["join_seen_by_alice"], async () => {
  const body = `hello alice ${RUN}`;
  const seen = timelineBody("alice", room.id, body);
  const res = await users.bob.client.sendMessage(room.id, { msgtype: "m.text", body });
  const ev = await seen;
  if (ev.getId() !== res.event_id) throw new Error(`alice saw ${ev.getId()}, sent ${res.event_id}`);
  return { event_id: res.event_id };
});

// Both clients sit in long-polls while their access tokens expire; then each sends a message.
// The next request of each meets M_UNKNOWN_TOKEN (401, soft_logout) or an expiry the SDK knows
// about, the SDK calls tokenRefreshFunction and retries, and the messages still arrive.
await step("token_expiry_refreshed_by_sdk", ["message_alice_to_bob", "message_bob_to_alice"],
  async () => {
    const before = { alice: users.alice.refreshes.length, bob: users.bob.refreshes.length };
    await sleep(TOKEN_LIFETIME_MS + 1500);
    const toBob = `after expiry to bob ${RUN}`;
    const toAlice = `after expiry to alice ${RUN}`;
    const seenByBob = timelineBody("bob", room.id, toBob);
    const seenByAlice = timelineBody("alice", room.id, toAlice);
    await users.alice.client.sendMessage(room.id, { msgtype: "m.text", body: toBob });
    await users.bob.client.sendMessage(room.id, { msgtype: "m.text", body: toAlice });
    await seenByBob;
    await seenByAlice;
    for (const who of ["alice", "bob"]) {
      const u = users[who];
      if (u.refreshes.length <= before[who]) {
        throw new Error(`${who}'s SDK did not refresh its expired access token`);
      }
      if (u.loggedOut.length > 0) throw new Error(`${who} was logged out: ${u.loggedOut}`);
      if (u.syncStates.includes("ERROR")) throw new Error(`${who}'s sync failed: ${u.syncError}`);
      if (u.client.getAccessToken() === u.firstAccessToken) {
        throw new Error(`${who} still uses the first access token`);
      }
    }
    return {
      refreshes: { alice: users.alice.refreshes.length, bob: users.bob.refreshes.length },
      sync_states: { alice: users.alice.syncStates.slice(-3), bob: users.bob.syncStates.slice(-3) },
    };
  });

// Typing: alice types, bob's RoomMember.typing fires for her (m.typing in his sync's ephemeral
// events); then she stops and it fires again with typing false.
await step("typing_seen_by_bob", ["join_seen_by_alice"], async () => {
  const bob = users.bob.client;
  const member = () => bob.getRoom(room.id)?.getMember(users.alice.userId);
  const started = waitFor(bob, RoomMemberEvent.Typing, (_e, m) =>
    (m?.userId === users.alice.userId && m.typing) || undefined, "alice typing at bob");
  await users.alice.client.sendTyping(room.id, true, 20000);
  await started;
  const stopped = waitFor(bob, RoomMemberEvent.Typing, (_e, m) =>
    (m?.userId === users.alice.userId && !m.typing) || undefined, "alice stopped typing at bob");
  await users.alice.client.sendTyping(room.id, false, 0);
  await stopped;
  return { typing_now: member()?.typing };
});

// Read receipts: alice sends a message, bob marks it read; alice's Room.receipt fires with it
// (m.receipt in her sync's ephemeral events) and her room reports bob's read up to that event.
await step("read_receipt_seen_by_alice", ["join_seen_by_alice"], async () => {
  const alice = users.alice.client;
  const body = `please read ${RUN}`;
  const seenByBob = timelineBody("bob", room.id, body);
  const { event_id: eventId } = await alice.sendMessage(room.id, { msgtype: "m.text", body });
  const bobEvent = await seenByBob;
  const seen = waitFor(alice, RoomEvent.Receipt, (ev) =>
    ev?.getContent()?.[eventId]?.[ReceiptType.Read]?.[users.bob.userId] ? true : undefined,
  "bob's m.read receipt at alice");
  await users.bob.client.sendReadReceipt(bobEvent, ReceiptType.Read);
  await seen;
  const upTo = alice.getRoom(room.id).getEventReadUpTo(users.bob.userId);
  if (upTo !== eventId) throw new Error(`alice's room says bob read up to ${upTo}, not ${eventId}`);
  return { event_id: eventId };
});

for (const who of ["alice", "bob"]) users[who].client?.stopClient();
emit({ kind: "done" });
process.exit(0);
