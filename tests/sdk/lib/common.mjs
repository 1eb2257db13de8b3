// SPDX-License-Identifier: Apache-2.0
//
// Shared helpers of the SDK suite: the cluster's settings (from the environment tests/sdk/run sets
// up), sandbox creation that cleans up after itself, a raw JSON-RPC WebSocket client for the
// protocol edge cases the SDK cannot express, and the sbx CLI for checks behind the gateway's back.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Sandbox } from "@deno/sandbox";
import WebSocket from "ws";

const run = promisify(execFile);

export const env = {
  endpoint: process.env.DENO_SANDBOX_ENDPOINT,
  token: process.env.DENO_DEPLOY_TOKEN,
  // The gateway's endpoint for the second region (sandboxes created there are placed in ord).
  ordEndpoint: process.env.SBX_GATEWAY_ENDPOINT_ORD,
  sbx: process.env.SBX_BIN ?? "build/bin/sbx",
};

if (!env.endpoint || !env.token) {
  throw new Error(
    "DENO_SANDBOX_ENDPOINT and DENO_DEPLOY_TOKEN are not set: run the suite through tests/sdk/run " +
      "(make check-sdk), or source a dev cluster's env file",
  );
}

// Sandboxes made through create() are killed after the test file, whatever happened; so are those
// whose creation was still under way (a sandbox left connected keeps the test process alive).
const made = new Set();
const creating = new Set();

export async function create(options = {}) {
  const p = Sandbox.create(options);
  creating.add(p);
  try {
    const sandbox = await p;
    made.add(sandbox);
    return sandbox;
  } finally {
    creating.delete(p);
  }
}

export async function cleanup() {
  await Promise.allSettled([...creating]);
  await Promise.allSettled(
    [...made].map(async (s) => {
      try {
        await s.kill();
      } catch {
        await s.close().catch(() => {});
      }
    }),
  );
  made.clear();
}

// The sandbox's state as the scheduler sees it ("running", "stopped", ...).
export async function state(id) {
  const { stdout } = await run(env.sbx, ["get", id, "--json"], { env: process.env });
  return JSON.parse(stdout).state;
}

// Waits until a region's nodes have `n` free sandbox slots (sandboxes of earlier tests take a
// moment to stop and release theirs).
export async function waitForSlots(region, n, timeoutMs = 60_000) {
  await waitFor(`${n} free slots in ${region}`, async () => {
    const { stdout } = await run(env.sbx, ["nodes", "--json"], { env: process.env });
    const free = JSON.parse(stdout)
      .filter((i) => i.node.region === region && !i.control?.cordoned && !i.control?.draining)
      .reduce((sum, i) => sum + i.node.capacity.slots - (i.usage?.allocated?.slots ?? 0), 0);
    return free >= n;
  }, timeoutMs, 500);
}

export async function waitFor(what, fn, timeoutMs = 30_000, intervalMs = 250) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A JSON-RPC client on a WebSocket of its own, for what the SDK does not let a test do: send raw
// frames, look at every message the server sends, cancel streams at chosen moments.
export class RawSocket {
  static async open({ path = "/api/v3/sandboxes/create", config = { memory_mb: 1280, volumes: [] }, headers = {} } = {}) {
    const url = env.endpoint.replace(/^http/, "ws") + path;
    const h = { authorization: `Bearer ${env.token}`, ...headers };
    if (config !== null && path.endsWith("/create")) {
      h["x-deno-sandbox-config"] = typeof config === "string" ? config : Buffer.from(JSON.stringify(config), "latin1").toString("base64");
    }
    const ws = new WebSocket(url, [], { headers: h });
    const s = new RawSocket(ws);
    await new Promise((resolve, reject) => {
      ws.once("upgrade", (res) => (s.sandboxId = res.headers["x-deno-sandbox-id"]));
      ws.once("open", resolve);
      ws.once("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => {
          const e = new Error(`HTTP ${res.statusCode}: ${body}`);
          e.status = res.statusCode;
          e.body = body;
          reject(e);
        });
      });
      ws.once("error", reject);
    });
    return s;
  }

  constructor(ws) {
    this.ws = ws;
    this.nextId = 0;
    // Every frame the server sent, in order, as text.
    this.frames = [];
    this.messages = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on("message", (data) => {
      const text = data.toString("utf8");
      this.frames.push(text);
      if (text === "pong") return;
      const m = JSON.parse(text);
      this.messages.push(m);
      for (const w of [...this.waiters]) {
        if (w.pred(m)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
  }

  send(obj) {
    this.ws.send(typeof obj === "string" ? obj : JSON.stringify(obj));
  }

  notify(method, params) {
    this.send({ jsonrpc: "2.0", method, params });
  }

  // Sends a request; returns {id, reply} where reply resolves with the whole response message.
  request(method, params = {}) {
    const id = this.nextId++;
    const reply = this.wait((m) => m.id === id && ("result" in m || "error" in m));
    this.send({ jsonrpc: "2.0", id, method, params });
    return { id, reply };
  }

  async call(method, params = {}) {
    const m = await this.request(method, params).reply;
    return m.result;
  }

  wait(pred, timeoutMs = 30_000) {
    const found = this.messages.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error("timed out waiting for a message"));
        }
      }, timeoutMs).unref();
    });
  }

  // The notifications of one stream, in order.
  stream(streamId) {
    return this.messages.filter((m) => m.method?.startsWith("$sandbox.stream.") && m.params?.streamId === streamId);
  }

  close() {
    this.ws.close();
    return this.closed;
  }
}
