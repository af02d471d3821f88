// Presence and user operations against a real `uws-py serve tests.support.presence_app:make`
// (presence with join_leave on room.*; admin.send and admin.kick call send_to_user and
// disconnect_user). Needs the uws_py package importable by UWS_PY_PYTHON.
import test from "node:test";
import assert from "node:assert/strict";
import { connect, RealtimeClient } from "../src/index.js";
import { signToken, startServer, until } from "../test-support/server.js";

const token = (user, claims = {}) => signToken({ sub: user, exp: Math.floor(Date.now() / 1000) + 600, ...claims });
const fast = { minReconnectDelay: 50, maxReconnectDelay: 300 };
const DIFF_INTERVAL_MS = 200;
const byId = (a, b) => (a.clientId < b.clientId ? -1 : 1);

test("presence and user operations", async (t) => {
  const server = await startServer({ args: ["tests.support.presence_app:make", "--presence-diff-interval", String(DIFF_INTERVAL_MS / 1000)] });
  t.after(() => server.stop());

  await t.test("presence() and presenceStats() list the subscribers", async () => {
    const alice = await connect(server.url, { token: token("alice", { info: { name: "Alice" } }), ...fast });
    const bob = await connect(server.url, { token: token("bob"), ...fast });
    const bob2 = await connect(server.url, { token: token("bob"), ...fast });
    for (const client of [alice, bob, bob2]) await client.subscribe("room.1", () => {}).ready;
    assert.deepEqual((await bob.presence("room.1")).sort(byId), [
      { clientId: alice.clientId, userId: "alice", info: { name: "Alice" } },
      { clientId: bob.clientId, userId: "bob", info: null },
      { clientId: bob2.clientId, userId: "bob", info: null },
    ].sort(byId));
    assert.deepEqual(await alice.presenceStats("room.1"), { topic: "room.1", numClients: 3, numUsers: 2 });
    await assert.rejects(alice.presence("news"), (error) => error.code === "NO_PRESENCE");
    for (const client of [alice, bob, bob2]) client.close();
  });

  await t.test("the subscription's presence event gets a diff when another client joins and leaves", async () => {
    const watcher = await connect(server.url, { token: token("watcher"), ...fast });
    const diffs = [];
    const subscription = watcher.subscribe("room.2", () => {});
    subscription.on("presence", (diff) => diffs.push(diff));
    await subscription.ready;
    await until(() => diffs.length === 1, "the watcher's own join");
    assert.deepEqual(diffs[0].joins, [{ clientId: watcher.clientId, userId: "watcher", info: null }]);
    const bob = await connect(server.url, { token: token("bob", { info: [1, 2] }), ...fast });
    await bob.subscribe("room.2", () => {}).ready;
    await until(() => diffs.length === 2, "bob's join");
    assert.deepEqual([diffs[1].topic, diffs[1].joins, diffs[1].leaves],
      ["room.2", [{ clientId: bob.clientId, userId: "bob", info: [1, 2] }], []]);
    const bobId = bob.clientId;
    bob.close();
    await until(() => diffs.length === 3, "bob's leave");
    assert.deepEqual([diffs[2].joins, diffs[2].leaves], [[], [{ clientId: bobId, userId: "bob", info: null }]]);
    assert.ok(diffs[2].timestamp - diffs[1].timestamp >= DIFF_INTERVAL_MS - 2);
    watcher.close();
  });

  await t.test("server.send_to_user arrives as a userMessage on every connection of the user", async () => {
    const alice1 = await connect(server.url, { token: token("alice"), ...fast });
    const alice2 = await connect(server.url, { token: token("alice"), ...fast });
    const bob = await connect(server.url, { token: token("bob"), ...fast });
    const got = { alice1: [], alice2: [], bob: [] };
    alice1.on("userMessage", (message) => got.alice1.push(message));
    alice2.on("userMessage", (message) => got.alice2.push(message));
    bob.on("userMessage", (message) => got.bob.push(message));
    const reply = await bob.request("admin.send", { user: "alice", data: { unread: 3 } });
    assert.equal(reply.local, 2);
    await until(() => got.alice1.length === 1 && got.alice2.length === 1, "alice's two connections");
    const expected = [{ topic: "#user:alice", data: { unread: 3 }, from: null }];
    assert.deepEqual(got.alice1, expected);
    assert.deepEqual(got.alice2, expected);
    await bob.ping();
    assert.deepEqual(got.bob, []);
    for (const client of [alice1, alice2, bob]) client.close();
  });

  await t.test("disconnect_user with 4000-4999 closes the client for good with that code", async () => {
    const alice = new RealtimeClient(server.url, { token: token("alice"), ...fast });
    await alice.connect();
    const admin = await connect(server.url, { token: token("admin"), ...fast });
    const closed = new Promise((resolve) => alice.on("closed", resolve));
    let connects = 0;
    alice.on("connecting", () => connects++);
    await admin.request("admin.kick", { user: "alice", code: 4001 });
    const info = await closed;
    assert.deepEqual([info.code, info.reason, alice.state], [4001, "kicked", "closed"]);
    assert.match(info.error.message, /4001 kicked/);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(connects, 0, "reconnected after a final close code");
    admin.close();
  });

  await t.test("disconnect_user with 3000-3999 reconnects and says why", async () => {
    const alice = await connect(server.url, { token: token("alice"), ...fast });
    const admin = await connect(server.url, { token: token("admin"), ...fast });
    const firstId = alice.clientId;
    const subscription = alice.subscribe("room.3", () => {});
    await subscription.ready;
    const dropped = new Promise((resolve) => alice.on("disconnected", resolve));
    const resubscribed = new Promise((resolve) => subscription.on("subscribed", resolve));
    await admin.request("admin.kick", { user: "alice", code: 3001 });
    const info = await dropped;
    assert.deepEqual([info.code, info.reason, info.wasConnected], [3001, "kicked", true]);
    await resubscribed;
    assert.notEqual(alice.clientId, firstId);
    assert.deepEqual((await admin.presence("room.3")).map((entry) => entry.clientId), [alice.clientId]);
    alice.close();
    admin.close();
  });
});
