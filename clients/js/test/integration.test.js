// Against a real `uws-py serve` process: needs the uws_py package importable by UWS_PY_PYTHON.
import test from "node:test";
import assert from "node:assert/strict";
import { connect, RealtimeClient } from "../src/index.js";
import { signToken, startServer, until } from "../test-support/server.js";

const token = (user, seconds = 600) => signToken({ sub: user, exp: Math.floor(Date.now() / 1000) + seconds });
const fast = { minReconnectDelay: 50, maxReconnectDelay: 300 };

test("integration", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());

  await t.test("connects with the bearer subprotocol and gets its identity", async () => {
    const client = await connect(server.url, { token: token("alice"), ...fast });
    assert.equal(client.state, "connected");
    assert.equal(client.userId, "alice");
    assert.match(client.clientId, /^[0-9a-f]{16}$/);
    const { serverTime } = await client.ping();
    assert.ok(Math.abs(serverTime - Date.now()) < 60000);
    client.close();
  });

  await t.test("a refused token without getToken fails the connection", async () => {
    const client = new RealtimeClient(server.url, { token: "not.a.token", ...fast });
    const refused = new Promise((resolve) => client.on("disconnected", resolve));
    client.connect().catch(() => {});
    const info = await refused;
    assert.equal(info.wasConnected, false);
    client.close();
  });

  await t.test("subscribe and publish between two clients", async () => {
    const alice = await connect(server.url, { token: token("alice"), ...fast });
    const bob = await connect(server.url, { token: token("bob"), ...fast });
    const got = [];
    const subscription = bob.subscribe("chat.lobby", (message) => got.push(message));
    await subscription.ready;
    await alice.publish("chat.lobby", { text: "hi" });
    await until(() => got.length === 1, "bob's message");
    assert.deepEqual(got[0].data, { text: "hi" });
    assert.equal(got[0].from, alice.clientId);
    alice.close();
    bob.close();
  });

  await t.test("request/reply by id, and an ERROR reply rejects", async () => {
    const client = await connect(server.url, { token: token("carol"), ...fast });
    const pong = await client.request("PING", {}, { timeout: 2000 });
    assert.equal(pong.type, "PONG");
    await assert.rejects(client.request("no.such.type", {}, { timeout: 2000 }), (error) => error.code === "UNKNOWN_TYPE");
    client.close();
  });

  await t.test("a token about to expire is refreshed through AUTH without dropping", async () => {
    let issued = 0;
    const client = await connect(server.url, { getToken: async () => (issued++, token("dave", 2)), ...fast });
    let drops = 0;
    client.on("disconnected", () => drops++);
    let refreshes = 0;
    client.on("tokenRefreshed", () => refreshes++);
    await until(() => refreshes >= 2, "two refreshes", 8000);
    assert.equal(drops, 0);
    assert.equal(client.state, "connected");
    client.close();
  });
});

test("server killed and restarted: clients reconnect and resubscribe", async (t) => {
  let server = await startServer();
  t.after(() => server.stop());
  const publisher = await connect(server.url, { token: token("pub"), ...fast });
  const subscriber = await connect(server.url, { token: token("sub"), ...fast });
  t.after(() => { publisher.close(); subscriber.close(); });
  const got = [];
  const subscription = subscriber.subscribe("news", (message) => got.push(message.data));
  await subscription.ready;
  await publisher.publish("news", "before");
  await until(() => got.length === 1, "the first message");

  const resubscribed = new Promise((resolve) => {
    let count = 0;
    subscription.on("subscribed", () => ++count === 1 && resolve());
  });
  await server.stop("SIGKILL");
  await until(() => subscriber.state !== "connected" && publisher.state !== "connected", "both to notice");
  server = await startServer({ port: server.port });
  await until(() => subscriber.state === "connected" && publisher.state === "connected", "both to reconnect");
  await resubscribed;
  await publisher.publish("news", "after");
  await until(() => got.length === 2, "the message after the restart");
  assert.deepEqual(got, ["before", "after"]);
});
