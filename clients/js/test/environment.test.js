// The browser's signals (online, visibilitychange) on a stand-in window and document: this file
// runs in its own process, so the globals it sets reach no other test.
import test from "node:test";
import assert from "node:assert/strict";
import { RealtimeClient } from "../src/index.js";
import { fakeWebSocketClass, until } from "../test-support/fake-websocket.js";

globalThis.window = new EventTarget();
const fakeDocument = new EventTarget();
fakeDocument.visibilityState = "visible";
globalThis.document = fakeDocument;

async function connected(options = {}) {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const client = new RealtimeClient("ws://test/realtime", {
    WebSocket: FakeWebSocket, minReconnectDelay: 5, maxReconnectDelay: 20,
    pingInterval: 60000, pongTimeout: 40, ...options,
  });
  const ready = client.connect();
  await until(() => sockets.length === 1, "the first socket");
  sockets[0].connected();
  await ready;
  return { client, sockets };
}

const pings = (socket) => socket.sent.filter((message) => message.type === "PING");

test("back online while connected: a PING at once, and no reply gives the dead socket up", async () => {
  const { client, sockets } = await connected();
  window.dispatchEvent(new Event("online"));
  assert.equal(pings(sockets[0]).length, 1, "no PING when the page came back online");
  window.dispatchEvent(new Event("online"));
  assert.equal(pings(sockets[0]).length, 1, "a second PING while the first one is out");
  await until(() => sockets.length === 2, "a new socket after the PING timed out");
  assert.equal(sockets[0].closedWith.code, 3000);
  sockets[1].connected();
  await until(() => client.state === "connected", "connected again");
  client.close();
});

test("back online while connected: a PONG keeps the connection", async () => {
  const { client, sockets } = await connected();
  window.dispatchEvent(new Event("online"));
  const ping = pings(sockets[0])[0];
  sockets[0].receive({ type: "PONG", serverTime: Date.now(), id: ping.id });
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].closedWith, null);
  assert.equal(client.state, "connected");
  window.dispatchEvent(new Event("online"));
  assert.equal(pings(sockets[0]).length, 2, "the next wake-up probes again");
  client.close();
});

test("back online while waiting out the backoff: reconnects at once", async () => {
  const { client, sockets } = await connected({ minReconnectDelay: 60000, maxReconnectDelay: 60000, random: () => 1 });
  sockets[0].serverClose(1006);
  assert.equal(client.state, "disconnected");
  window.dispatchEvent(new Event("online"));
  await until(() => sockets.length === 2, "a socket right after the online event", 500);
  client.close();
});

test("the page becoming visible probes; hidden does nothing", async () => {
  const { client, sockets } = await connected();
  fakeDocument.visibilityState = "hidden";
  fakeDocument.dispatchEvent(new Event("visibilitychange"));
  assert.equal(pings(sockets[0]).length, 0);
  fakeDocument.visibilityState = "visible";
  fakeDocument.dispatchEvent(new Event("visibilitychange"));
  assert.equal(pings(sockets[0]).length, 1);
  client.close();
});

test("a closed client stops listening to the page", async () => {
  const { client, sockets } = await connected();
  client.close();
  window.dispatchEvent(new Event("online"));
  assert.equal(pings(sockets[0]).length, 0);
  assert.equal(sockets.length, 1);
});
