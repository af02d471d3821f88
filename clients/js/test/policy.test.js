import test from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, closeDecision, decodeJwtExp, refreshDelay } from "../src/index.js";

test("backoff stays within [0, min(max, min * 2^attempt)] and spreads over 1,000 draws", () => {
  const min = 100;
  const max = 5000;
  for (const attempt of [0, 1, 3, 6, 20, 100]) {
    const ceiling = Math.min(max, min * 2 ** attempt);
    const draws = Array.from({ length: 1000 }, () => backoffDelay(attempt, min, max));
    for (const delay of draws) {
      assert.ok(delay >= 0 && delay <= ceiling, `attempt ${attempt}: ${delay} outside [0, ${ceiling}]`);
    }
    // Full jitter: the draws cover the range, they do not cluster at the ceiling.
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    assert.ok(mean > ceiling * 0.4 && mean < ceiling * 0.6, `attempt ${attempt}: mean ${mean} of ${ceiling}`);
    assert.ok(Math.min(...draws) < ceiling * 0.1 && Math.max(...draws) > ceiling * 0.9);
    assert.ok(new Set(draws).size > 990, "draws repeat: no jitter");
  }
});

test("backoff uses the injected random source at both ends", () => {
  assert.equal(backoffDelay(2, 100, 5000, () => 0), 0);
  assert.equal(backoffDelay(2, 100, 5000, () => 1), 400);
  assert.equal(backoffDelay(10, 100, 5000, () => 1), 5000);
});

test("close codes: transient ones reconnect, token expiry refreshes, the rest stop", () => {
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 1014, 3000]) assert.equal(closeDecision(code, ""), "reconnect", `code ${code}`);
  assert.equal(closeDecision(1008, "token expired"), "refresh");
  assert.equal(closeDecision(1008, "rate limit exceeded"), "reconnect");
  assert.equal(closeDecision(1008, "backpressure limit"), "reconnect");
  assert.equal(closeDecision(1008, "policy"), "stop");
  for (const code of [1000, 1002, 1003, 1007, 1009, 1010, 4000, 4001, 4999]) assert.equal(closeDecision(code, "x"), "stop", `code ${code}`);
});

function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

test("decodeJwtExp reads exp from the base64url payload and tolerates garbage", () => {
  assert.equal(decodeJwtExp(jwt({ sub: "u", exp: 1700000000, name: "é?>>" })), 1700000000);
  assert.equal(decodeJwtExp(jwt({ sub: "u" })), null);
  assert.equal(decodeJwtExp("not-a-jwt"), null);
  assert.equal(decodeJwtExp("a.%%%.c"), null);
  assert.equal(decodeJwtExp(null), null);
});

test("refresh happens after three quarters of the time left, at most refreshBefore early", () => {
  const now = 1_000_000_000;
  assert.equal(refreshDelay(now / 1000 + 4, now, 10000), 3000);
  assert.equal(refreshDelay(now / 1000 + 3600, now, 10000), 3600000 - 10000);
  assert.equal(refreshDelay(now / 1000 - 5, now, 10000), 0);
});
