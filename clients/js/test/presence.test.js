// Presence and user messages without a network: PRESENCE/PRESENCE_STATS requests, PRESENCE_DIFF
// to the subscription's "presence" event, MESSAGEs on the own #user: topic to "userMessage", and
// the close code of a server's disconnect reaching "disconnected"/"closed".
import test from "node:test";
import assert from "node:assert/strict";
import { RealtimeClient, RealtimeError, presenceEntries } from "../src/index.js";
import { fakeWebSocketClass, until } from "../test-support/fake-websocket.js";

async function connected(extra = {}) {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const client = new RealtimeClient("ws://test/realtime", { WebSocket: FakeWebSocket, minReconnectDelay: 5, maxReconnectDelay: 20 });
  const ready = client.connect();
  await until(() => sockets.length === 1, "the first socket");
  sockets[0].connected(extra);
  await ready;
  return { client, sockets };
}

async function subscribed(client, socket, topic) {
  const subscription = client.subscribe(topic, () => {});
  socket.receive({ type: "SUBSCRIBED", topic, id: socket.lastSent("SUBSCRIBE").id });
  await subscription.ready;
  return subscription;
}

test("presence() and presenceStats() send their requests and resolve with typed results", async () => {
  const { client, sockets } = await connected();
  const listing = client.presence("room.1");
  const request = sockets[0].lastSent("PRESENCE");
  assert.deepEqual({ ...request, id: 0 }, { type: "PRESENCE", topic: "room.1", id: 0 });
  sockets[0].receive({ type: "PRESENCE_RESULT", topic: "room.1", id: request.id, clients: [
    { clientId: "a1", userId: "alice", info: { name: "Alice" } }, { clientId: "x", userId: null, info: null }, { nope: 1 },
  ] });
  assert.deepEqual(await listing, [{ clientId: "a1", userId: "alice", info: { name: "Alice" } }, { clientId: "x", userId: null, info: null }]);
  const counting = client.presenceStats("room.1");
  const stats = sockets[0].lastSent("PRESENCE_STATS");
  sockets[0].receive({ type: "PRESENCE_STATS_RESULT", topic: "room.1", id: stats.id, numClients: 2, numUsers: 1 });
  assert.deepEqual(await counting, { topic: "room.1", numClients: 2, numUsers: 1 });
  const refused = client.presence("news");
  sockets[0].receive({ type: "ERROR", code: "NO_PRESENCE", message: "topic 'news' has no presence", id: sockets[0].lastSent("PRESENCE").id });
  await assert.rejects(refused, (error) => error instanceof RealtimeError && error.code === "NO_PRESENCE");
  client.close();
});

test("a PRESENCE_DIFF goes to its subscription's presence event, not to the client's message event", async () => {
  const { client, sockets } = await connected();
  const subscription = await subscribed(client, sockets[0], "room.1");
  const diffs = [];
  const generic = [];
  subscription.on("presence", (diff) => diffs.push(diff));
  client.on("message", (message) => generic.push(message));
  sockets[0].receive({ type: "PRESENCE_DIFF", topic: "room.1", timestamp: 1700000001000,
    joins: [{ clientId: "a1", userId: "alice", info: { n: 1 } }], leaves: [{ clientId: "b1", userId: "bob" }] });
  sockets[0].receive({ type: "PRESENCE_DIFF", topic: "room.9", timestamp: 1, joins: [], leaves: [] });
  assert.deepEqual(diffs, [{ topic: "room.1", timestamp: 1700000001000,
    joins: [{ clientId: "a1", userId: "alice", info: { n: 1 } }], leaves: [{ clientId: "b1", userId: "bob", info: null }] }]);
  assert.deepEqual(generic, []);
  const leaving = subscription.unsubscribe();
  sockets[0].receive({ type: "UNSUBSCRIBED", topic: "room.1", id: sockets[0].lastSent("UNSUBSCRIBE").id });
  await leaving;
  sockets[0].receive({ type: "PRESENCE_DIFF", topic: "room.1", timestamp: 2, joins: [], leaves: [] });
  assert.equal(diffs.length, 1, "a diff reached a subscription that ended");
  client.close();
});

test("MESSAGEs on the own #user: topic are userMessage events; other users' topics are dropped", async () => {
  const { client, sockets } = await connected({ userId: "alice" });
  assert.equal(client.userTopic, "#user:alice");
  const got = [];
  client.on("userMessage", (message) => got.push(message));
  sockets[0].receive({ type: "MESSAGE", topic: "#user:bob", data: 1, from: null });
  sockets[0].receive({ type: "MESSAGE", topic: "#user:alice", data: { unread: 3 }, from: null });
  assert.deepEqual(got, [{ topic: "#user:alice", data: { unread: 3 }, from: null }]);
  client.close();
});

test("without a user there is no user topic", async () => {
  const { client, sockets } = await connected();
  assert.equal(client.userTopic, null);
  const got = [];
  client.on("userMessage", (message) => got.push(message));
  sockets[0].receive({ type: "MESSAGE", topic: "#user:null", data: 1, from: null });
  assert.deepEqual(got, []);
  client.close();
});

test("presenceEntries keeps the well-formed entries only", () => {
  assert.deepEqual(presenceEntries([{ clientId: "a", userId: 5 }, "x", null, { clientId: 1 }]), [{ clientId: "a", userId: null, info: null }]);
  assert.deepEqual(presenceEntries(undefined), []);
});
