import test from "node:test";
import assert from "node:assert/strict";
import { RealtimeClient } from "../src/index.js";
import { fakeWebSocketClass, until } from "../test-support/fake-websocket.js";

async function setUp() {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const client = new RealtimeClient("ws://test/realtime", { WebSocket: FakeWebSocket, minReconnectDelay: 5, maxReconnectDelay: 10 });
  const ready = client.connect();
  await until(() => sockets.length === 1, "a socket");
  sockets[0].connected();
  await ready;
  return { client, sockets };
}

const publication = (offset) => ({ data: `m${offset}`, from: null, offset });

test("recovery: resubscribes with its position, delivers recovered before live, skips duplicates", async () => {
  const { client, sockets } = await setUp();
  const got = [];
  const subscription = client.subscribe("chat.1", (message) => got.push([message.offset, message.recovered]));
  const events = [];
  subscription.on("subscribed", (info) => events.push(info));
  const first = sockets[0].lastSent("SUBSCRIBE");
  assert.equal(first.recover, undefined, "a first subscribe has nothing to recover");
  sockets[0].receive({ type: "SUBSCRIBED", topic: "chat.1", id: first.id, epoch: "e1", offset: 10 });
  await subscription.ready;
  for (const offset of [11, 12]) sockets[0].receive({ type: "MESSAGE", topic: "chat.1", ...publication(offset) });
  sockets[0].serverClose(1006);
  await until(() => sockets.length === 2, "a reconnect");
  sockets[1].connected();
  const again = sockets[1].lastSent("SUBSCRIBE");
  assert.deepEqual([again.recover, again.since], [true, { epoch: "e1", offset: 12 }]);
  // Live messages overtake the SUBSCRIBED reply (batching holds replies): held back, then ordered.
  sockets[1].receive({ type: "MESSAGE", topic: "chat.1", ...publication(17) });
  sockets[1].receive({ type: "MESSAGE", topic: "chat.1", ...publication(16) });
  sockets[1].receive({
    type: "SUBSCRIBED", topic: "chat.1", id: again.id, epoch: "e1", offset: 15, wasRecovering: true, recovered: true,
    publications: [publication(12), publication(13), publication(14), publication(15)],
  });
  sockets[1].receive({ type: "MESSAGE", topic: "chat.1", ...publication(16) });
  sockets[1].receive({ type: "MESSAGE", topic: "chat.1", ...publication(18) });
  assert.deepEqual(got, [[11, false], [12, false], [13, true], [14, true], [15, true], [16, false], [17, false], [18, false]]);
  assert.deepEqual(events.map((e) => [e.wasRecovering, e.recovered]), [[false, false], [true, true]]);
  assert.equal(subscription.offset, 18);
  client.close();
});

test("a failed recovery reports a gap and continues from the server's position", async () => {
  const { client, sockets } = await setUp();
  const got = [];
  const subscription = client.subscribe("chat.2", (message) => got.push(message.offset), { since: { epoch: "old", offset: 3 } });
  const gaps = [];
  subscription.on("gap", (gap) => gaps.push(gap));
  const sent = sockets[0].lastSent("SUBSCRIBE");
  assert.deepEqual(sent.since, { epoch: "old", offset: 3 });
  sockets[0].receive({ type: "SUBSCRIBED", topic: "chat.2", id: sent.id, epoch: "new", offset: 40, wasRecovering: true, recovered: false, publications: [] });
  sockets[0].receive({ type: "MESSAGE", topic: "chat.2", ...publication(41) });
  assert.deepEqual(got, [41]);
  assert.equal(gaps.length, 1);
  assert.deepEqual(gaps[0].previous, { epoch: "old", offset: 3 });
  assert.equal(gaps[0].epoch, "new");
  client.close();
});

test("UNSUBSCRIBED insufficient_state makes the subscription recover at once", async () => {
  const { client, sockets } = await setUp();
  const got = [];
  client.subscribe("chat.3", (message) => got.push(message.offset));
  const first = sockets[0].lastSent("SUBSCRIBE");
  sockets[0].receive({ type: "SUBSCRIBED", topic: "chat.3", id: first.id, epoch: "e", offset: 5 });
  sockets[0].receive({ type: "MESSAGE", topic: "chat.3", ...publication(6) });
  sockets[0].receive({ type: "UNSUBSCRIBED", topic: "chat.3", reason: "insufficient_state", resubscribe: true });
  const again = sockets[0].lastSent("SUBSCRIBE");
  assert.notEqual(again.id, first.id);
  assert.deepEqual(again.since, { epoch: "e", offset: 6 });
  sockets[0].receive({ type: "SUBSCRIBED", topic: "chat.3", id: again.id, epoch: "e", offset: 8, wasRecovering: true, recovered: true, publications: [publication(6), publication(7), publication(8)] });
  assert.deepEqual(got, [6, 7, 8]);
  client.close();
});

test("own publications (echo off) count as seen, so recovery does not hand them back", async () => {
  const { client, sockets } = await setUp();
  const got = [];
  client.subscribe("chat.4", (message) => got.push(message.offset));
  const sub = sockets[0].lastSent("SUBSCRIBE");
  sockets[0].receive({ type: "SUBSCRIBED", topic: "chat.4", id: sub.id, epoch: "e", offset: 1 });
  const published = client.publish("chat.4", "mine");
  sockets[0].receive({ type: "PUBLISHED", topic: "chat.4", id: sockets[0].lastSent("PUBLISH").id, epoch: "e", offset: 2 });
  assert.equal((await published).offset, 2);
  sockets[0].receive({ type: "MESSAGE", topic: "chat.4", ...publication(3) });
  assert.deepEqual(got, [3]);
  client.close();
});

test("plain topics (no epoch) deliver every MESSAGE and resubscribe without recover", async () => {
  const { client, sockets } = await setUp();
  const got = [];
  client.subscribe("plain", (message) => got.push(message.data));
  const sub = sockets[0].lastSent("SUBSCRIBE");
  sockets[0].receive({ type: "MESSAGE", topic: "plain", data: "early", from: "x" });
  sockets[0].receive({ type: "SUBSCRIBED", topic: "plain", id: sub.id });
  sockets[0].receive({ type: "MESSAGE", topic: "plain", data: "late", from: "x" });
  assert.deepEqual(got, ["early", "late"]);
  sockets[0].serverClose(1012);
  await until(() => sockets.length === 2, "a reconnect");
  sockets[1].connected();
  assert.equal(sockets[1].lastSent("SUBSCRIBE").recover, undefined);
  client.close();
});

test("FORBIDDEN fails the subscription for good", async () => {
  const { client, sockets } = await setUp();
  const subscription = client.subscribe("admin", () => {});
  const sent = sockets[0].lastSent("SUBSCRIBE");
  sockets[0].receive({ type: "ERROR", code: "FORBIDDEN", message: "no", id: sent.id });
  await assert.rejects(subscription.ready, (error) => error.code === "FORBIDDEN");
  assert.equal(subscription.state, "failed");
  client.subscribe("admin", () => {}); // the topic is free again
  client.close();
});
