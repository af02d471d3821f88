// Starts a real `uws-py serve` process on loopback for the integration tests, and stops it by PID.
// The interpreter is UWS_PY_PYTHON (the pytest wrapper sets it), else python3 on PATH. It runs in
// the repository's root, so `args` may name an application of the Python tests' support package
// (e.g. "tests.support.presence_app:make").
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const REPOSITORY = fileURLToPath(new URL("../../..", import.meta.url));

export const SECRET = "integration-secret-of-at-least-32-bytes!";
const PYTHON = process.env.UWS_PY_PYTHON || "python3";

export function signToken(claims, secret = SECRET) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export async function startServer({ port, args = [] } = {}) {
  port = port ?? (await freePort());
  const child = spawn(PYTHON, ["-m", "uws_py.cli", "serve", "--host", "127.0.0.1", "--port", String(port),
    "--jwt-secret", SECRET, "--rate-limit", "off", "--no-access-log", ...args], { cwd: REPOSITORY, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const listening = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 10 s:\n${output}`)), 10000);
    const read = (chunk) => {
      output += chunk;
      if (/listening on/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
  listening.catch(() => {});
  await listening;
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    port,
    url: `ws://127.0.0.1:${port}/realtime`,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export async function until(predicate, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
