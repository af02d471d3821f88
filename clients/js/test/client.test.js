import test from "node:test";
import assert from "node:assert/strict";
import { RealtimeClient, TimeoutError, RealtimeError, UnauthorizedError } from "../src/index.js";
import { fakeWebSocketClass, until } from "../test-support/fake-websocket.js";

function makeClient(options = {}) {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const client = new RealtimeClient("ws://test/realtime", {
    WebSocket: FakeWebSocket,
    minReconnectDelay: 5,
    maxReconnectDelay: 20,
    ...options,
  });
  return { client, sockets };
}

async function connected(options) {
  const made = makeClient(options);
  const ready = made.client.connect();
  await until(() => made.sockets.length === 1, "the first socket");
  made.sockets[0].connected();
  await ready;
  return made;
}

test("the token travels as the bearer subprotocol", async () => {
  const { client, sockets } = await connected({ token: "abc.def.ghi" });
  assert.deepEqual(sockets[0].protocols, ["bearer", "abc.def.ghi"]);
  assert.equal(client.state, "connected");
  client.close();
  assert.equal(client.state, "closed");
  assert.equal(sockets[0].closedWith.code, 1000);
});

test("request matches replies by id; a timed-out request's late reply is dropped", async () => {
  const { client, sockets } = await connected();
  const slow = client.request("slow.op", { n: 1 }, { timeout: 30 });
  const fast = client.request("fast.op", { n: 2 });
  const [slowSent, fastSent] = sockets[0].sent;
  assert.equal(slowSent.type, "slow.op");
  assert.notEqual(slowSent.id, fastSent.id);
  sockets[0].receive({ type: "fast.done", id: fastSent.id });
  assert.equal((await fast).type, "fast.done");
  await assert.rejects(slow, TimeoutError);
  const seen = [];
  client.on("message", (message) => seen.push(message));
  sockets[0].receive({ type: "slow.done", id: slowSent.id });
  assert.deepEqual(seen, [], "the late reply reached the application");
  const failing = client.request("bad.op");
  sockets[0].receive({ type: "ERROR", code: "FORBIDDEN", message: "no", id: sockets[0].lastSent("bad.op").id });
  await assert.rejects(failing, (error) => error instanceof RealtimeError && error.code === "FORBIDDEN");
  client.close();
});

test("replies inside server BATCH frames are unwrapped, recursively", async () => {
  const { client, sockets } = await connected();
  const pong = client.request("PING");
  const id = sockets[0].lastSent("PING").id;
  sockets[0].receive({ type: "BATCH", messages: [{ type: "BATCH", messages: [{ type: "PONG", serverTime: 5, id }] }] });
  assert.equal((await pong).serverTime, 5);
  client.close();
});

test("publishes while disconnected wait in a bounded queue and leave after CONNECTED", async () => {
  const { client, sockets } = makeClient({ maxQueue: 2 });
  client.connect();
  const first = client.publish("a", 1);
  const second = client.publish("a", 2);
  await assert.rejects(client.publish("a", 3), (error) => error.code === "QUEUE_FULL");
  await until(() => sockets.length === 1, "a socket");
  assert.deepEqual(sockets[0].sent, []);
  sockets[0].connected();
  assert.deepEqual(sockets[0].sent.map((m) => [m.type, m.data]), [["PUBLISH", 1], ["PUBLISH", 2]]);
  for (const message of sockets[0].sent) sockets[0].receive({ type: "PUBLISHED", topic: "a", id: message.id });
  await Promise.all([first, second]);
  client.close();
});

test("a request in flight when the connection drops rejects with CONNECTION_LOST", async () => {
  const { client, sockets } = await connected();
  const pending = client.request("op");
  sockets[0].serverClose(1006);
  await assert.rejects(pending, (error) => error.code === "CONNECTION_LOST");
  client.close();
});

test("close codes drive reconnects: 1006 reconnects, 4001 stops with an error", async () => {
  const { client, sockets } = await connected();
  const states = [];
  client.on("state", (state) => states.push(state));
  sockets[0].serverClose(1006);
  await until(() => sockets.length === 2, "a second socket");
  sockets[1].connected();
  assert.deepEqual(states, ["disconnected", "connecting", "connected"]);
  let closed = null;
  client.on("closed", (info) => (closed = info));
  sockets[1].serverClose(4001, "banned");
  assert.equal(client.state, "closed");
  assert.equal(closed.code, 4001);
  await new Promise((resolve) => setTimeout(resolve, 40));
  assert.equal(sockets.length, 2, "reconnected after a final code");
});

test("1008 token expired asks getToken again and reconnects with the new token", async () => {
  let calls = 0;
  const { client, sockets } = await connected({ getToken: async () => `token-${++calls}` });
  assert.deepEqual(sockets[0].protocols, ["bearer", "token-1"]);
  sockets[0].serverClose(1008, "token expired");
  await until(() => sockets.length === 2, "a second socket");
  assert.deepEqual(sockets[1].protocols, ["bearer", "token-2"]);
  client.close();
});

test("UNAUTHORIZED from getToken stops retrying", async () => {
  const { client, sockets } = makeClient({ getToken: async () => { throw new UnauthorizedError("gone"); } });
  await assert.rejects(client.connect(), UnauthorizedError);
  assert.equal(client.state, "closed");
  assert.equal(sockets.length, 0);
});

test("the token is refreshed with AUTH before expiresAt, without reconnecting", async () => {
  let calls = 0;
  const { client, sockets } = makeClient({ getToken: async () => `t${++calls}` });
  client.connect();
  await until(() => sockets.length === 1, "a socket");
  sockets[0].connected({ expiresAt: Date.now() / 1000 + 0.2 });
  await until(() => sockets[0].lastSent("AUTH"), "an AUTH", 1000);
  const auth = sockets[0].lastSent("AUTH");
  assert.equal(auth.token, "t2");
  const refreshed = new Promise((resolve) => client.on("tokenRefreshed", resolve));
  sockets[0].receive({ type: "AUTHENTICATED", expiresAt: Date.now() / 1000 + 3600, id: auth.id });
  assert.ok((await refreshed).expiresAt > Date.now() / 1000);
  assert.equal(sockets.length, 1);
  client.close();
});

test("a refresh cut short by a lost connection is no error, and its token serves the reconnect", async () => {
  let calls = 0;
  const { client, sockets } = makeClient({ getToken: async () => `t${++calls}` });
  const errors = [];
  client.on("error", (error) => errors.push(error));
  client.connect();
  await until(() => sockets.length === 1, "a socket");
  sockets[0].connected({ expiresAt: Date.now() / 1000 + 0.2 });
  await until(() => sockets[0].lastSent("AUTH"), "an AUTH", 1000);
  sockets[0].serverClose(1006);
  await until(() => sockets.length === 2, "a reconnect");
  assert.deepEqual(sockets[1].protocols, ["bearer", "t2"], "the reconnect used the older token");
  sockets[1].connected({ expiresAt: Date.now() / 1000 + 0.2 });
  await until(() => sockets[1].lastSent("AUTH"), "an AUTH on the new connection", 1000);
  assert.equal(sockets[1].lastSent("AUTH").token, "t3");
  assert.deepEqual(errors.map((error) => error.code), [], "a lost connection during AUTH was reported as an error");
  client.close();
});

test("silence is caught by PING: no PONG in time drops the socket and reconnects", async () => {
  const { client, sockets } = await connected({ pingInterval: 20, pongTimeout: 20 });
  await until(() => sockets[0].lastSent("PING"), "a PING");
  await until(() => sockets.length === 2, "a reconnect after the missing PONG");
  client.close();
});
