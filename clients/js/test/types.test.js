// index.d.ts checked by the TypeScript compiler against a typed usage file (test/types/usage.ts).
// tsc is the devDependency in package.json: `npm ci` in clients/js installs it (.ci/run does).
import test from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));

test("index.d.ts type-checks a typed usage and refuses the misuses it marks", () => {
  assert.ok(existsSync(tsc), `no TypeScript compiler at ${tsc}: run \`npm ci\` in clients/js`);
  const result = spawnSync(process.execPath, [tsc, "--noEmit", "-p", "test/types"], { cwd: root, encoding: "utf8", timeout: 120000 });
  assert.equal(result.status, 0, `tsc --noEmit failed:\n${result.stdout}${result.stderr}`);
});
