// SPDX-License-Identifier: Apache-2.0
//
// The wire protocol's edge cases (deno-sandbox-protocol.md §4), each with a test of its own, spoken
// as raw JSON-RPC on a WebSocket of the test's own (the SDK cannot express most of them): numeric
// ids, abort, streams without empty chunks and silent after a cancel, answers out of order while a
// processWait is pending, ping/pong, close codes, and what is not supported.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Sandbox } from "@deno/sandbox";
import { cleanup, env, RawSocket, sleep } from "./lib/common.mjs";

const b64 = (s) => Buffer.from(s).toString("base64");
const unb64 = (s) => Buffer.from(s, "base64").toString("utf8");

// Spawns and waits, returning the stdout text and the wait's result.
async function run(sock, command, args, extra = {}) {
  const spawned = await sock.call("spawn", { command, args, stdout: "piped", stderr: "piped", ...extra });
  const { pid, stdoutStreamId } = spawned.ok;
  const status = await sock.call("processWait", { pid });
  await sock.wait((m) => m.method === "$sandbox.stream.end" && m.params.streamId === stdoutStreamId);
  const out = sock.stream(stdoutStreamId).filter((m) => m.method === "$sandbox.stream.enqueue")
    .map((m) => unb64(m.params.data)).join("");
  return { out, status: status.ok, stdoutStreamId };
}

describe("wire protocol", () => {
  let sock;
  before(async () => {
    sock = await RawSocket.open({ config: { memory_mb: 1280, volumes: [], stop_at_ms: Date.now() + 180_000 } });
  });
  after(async () => {
    await sock?.close();
    await cleanup();
    // The sandbox has a fixed lifetime: kill it rather than wait for it.
    if (sock?.sandboxId) {
      const url = new URL(env.endpoint);
      url.pathname = `/api/v3/sandbox/${sock.sandboxId}`;
      await fetch(url, { method: "DELETE", headers: { authorization: `Bearer ${env.token}` } });
    }
  });

  test("the handshake answers 101 with x-deno-sandbox-id and no subprotocol", () => {
    assert.match(sock.sandboxId, /^sbx_[a-z]{3}_[0-9a-hjkmnp-z]{20}$/);
    assert.equal(sock.ws.protocol, "");
  });

  test("ids are echoed with their type; every frame is JSON-RPC 2.0 and no id is null", async () => {
    const r1 = sock.request("envGet", { key: "HOME" });
    const res = await r1.reply;
    assert.equal(typeof res.id, "number");
    assert.equal(res.id, r1.id);
    assert.deepEqual(res.result, { ok: "/home/app" });
    const raw = sock.frames.find((f) => f.includes(`"id":${r1.id},`));
    assert.ok(raw, "the id is written as a number");
    sock.send({ jsonrpc: "2.0", id: "text-id", method: "envGet", params: { key: "HOME" } });
    const byString = await sock.wait((m) => m.id === "text-id");
    assert.deepEqual(byString.result, { ok: "/home/app" });
    for (const f of sock.frames) {
      if (f === "pong") continue;
      const m = JSON.parse(f);
      assert.equal(m.jsonrpc, "2.0");
      assert.ok(!("id" in m) || m.id !== null);
    }
  });

  test('the bare text frame "ping" is answered with "pong"', async () => {
    const n = sock.frames.length;
    sock.send("ping");
    await sleep(300);
    assert.ok(sock.frames.slice(n).includes("pong"));
  });

  test("abort is always answered {ok:null}, and the aborted request ends with AbortError", async () => {
    // Unknown and long finished ids alike.
    assert.deepEqual(await sock.call("abort", { abortId: 987654321 }), { ok: null });
    await sock.call("readTextFile", { path: "/etc/hostname", abortId: 11 });
    assert.deepEqual(await sock.call("abort", { abortId: 11 }), { ok: null });
    // A read that takes long: an endless file (the gateway would stop it at its size limit).
    const pending = sock.request("readFile", { path: "/dev/zero", abortId: 12 });
    await sleep(100);
    assert.deepEqual(await sock.call("abort", { abortId: 12 }), { ok: null });
    const res = await pending.reply;
    assert.equal(res.result.error.constructorName, "DOMException");
    assert.equal(res.result.error.name, "AbortError");
  });

  test("an SDK AbortSignal fired after the call finished does not break the client", async () => {
    const sandbox = await Sandbox.connect(sock.sandboxId);
    const ac = new AbortController();
    assert.equal(await sandbox.fs.readTextFile("/etc/hostname", { signal: ac.signal }) !== "", true);
    ac.abort();
    // An {error} answer to that abort would be an unhandled rejection, failing this file.
    await sleep(500);
    await sandbox.close();
  });

  test("streams: start first, no empty chunks, end at EOF", async () => {
    const { out, status, stdoutStreamId } = await run(sock, "bash",
      ["-c", 'printf ""; printf ""; echo first; printf ""; sleep 0.2; printf ""; echo second']);
    assert.equal(out, "first\nsecond\n");
    assert.equal(status.code, 0);
    const msgs = sock.stream(stdoutStreamId);
    assert.equal(msgs[0].method, "$sandbox.stream.start");
    assert.equal(msgs.at(-1).method, "$sandbox.stream.end");
    assert.equal(msgs.filter((m) => m.method === "$sandbox.stream.start").length, 1);
    for (const m of msgs.filter((m) => m.method === "$sandbox.stream.enqueue"))
      assert.ok(Buffer.from(m.params.data, "base64").length > 0, "an empty chunk was sent");
  });

  test("nothing is sent on a stream after the client cancels it, not even end", async () => {
    await sock.call("remove", { path: "/tmp/go" });
    const spawned = await sock.call("spawn", {
      command: "bash",
      args: ["-c", "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; for i in $(seq 1 100); do echo after $i; done"],
      stdout: "piped",
      stderr: "null",
    });
    const { pid, stdoutStreamId } = spawned.ok;
    const wait = sock.request("processWait", { pid });
    await sock.wait((m) => m.method === "$sandbox.stream.enqueue" && m.params.streamId === stdoutStreamId);
    sock.notify("$sandbox.stream.cancel", { streamId: stdoutStreamId, reason: null });
    const seen = sock.stream(stdoutStreamId).length;
    await sleep(300);
    // Only now does the process write again.
    await sock.call("writeTextFile", { path: "/tmp/go", content: "" });
    const status = await wait.reply;
    assert.equal(status.result.ok.code, 0);
    await sleep(300);
    assert.equal(sock.stream(stdoutStreamId).length, seen, "notifications followed the cancel");
  });

  test("answers come out of order while a processWait is pending", async () => {
    const spawned = await sock.call("spawn", { command: "sleep", args: ["2"], stdout: "null", stderr: "null" });
    assert.equal(spawned.ok.stdoutStreamId, null);
    const wait = sock.request("processWait", { pid: spawned.ok.pid });
    const quick = [];
    for (let i = 0; i < 20; i++) quick.push(sock.request(i % 2 ? "envGet" : "stat", i % 2 ? { key: "HOME" } : { path: "/" }));
    const order = [];
    await Promise.all([wait, ...quick].map((r) => r.reply.then(() => order.push(r.id))));
    assert.equal(order.at(-1), wait.id, "the processWait issued first was answered last");
    assert.equal((await wait.reply).result.ok.code, 0);
  });

  test("client stream data sent before the request that uses it is buffered", async () => {
    const streamId = 4242;
    sock.notify("$sandbox.stream.start", { streamId });
    sock.notify("$sandbox.stream.enqueue", { streamId, data: b64("early ") });
    sock.notify("$sandbox.stream.enqueue", { streamId, data: b64("bird") });
    sock.notify("$sandbox.stream.end", { streamId });
    const { out } = await run(sock, "cat", [], { stdinStreamId: streamId });
    assert.equal(out, "early bird");
  });

  test("walk sends one JSON document per chunk", async () => {
    const res = await sock.call("walk", { path: "/etc/apt" });
    const { streamId } = res.ok;
    await sock.wait((m) => m.method === "$sandbox.stream.end" && m.params.streamId === streamId);
    const docs = sock.stream(streamId).filter((m) => m.method === "$sandbox.stream.enqueue").map((m) => JSON.parse(unb64(m.params.data)));
    assert.ok(docs.length > 1);
    assert.deepEqual(Object.keys(docs[0]), ["path", "name", "isFile", "isDirectory", "isSymlink"]);
  });

  test("bad requests get JSON-RPC errors with their id; bad frames change nothing", async () => {
    sock.send("{not json");
    sock.send({ jsonrpc: "2.0", method: "envGet" });
    sock.send({ jsonrpc: "1.0", id: 9001, method: "envGet", params: {} });
    const invalid = await sock.wait((m) => m.id === 9001);
    assert.equal(invalid.error.code, -32600);
    const unknown = await sock.request("noSuchMethod", {}).reply;
    assert.equal(unknown.error.code, -32601);
    const badParams = await sock.request("stat", { path: 42 }).reply;
    assert.equal(badParams.error.code, -32602);
    assert.deepEqual(await sock.call("envGet", { key: "HOME" }), { ok: "/home/app" });
  });

  test("the Deno runtime methods answer NotSupported", async () => {
    for (const [method, params] of [["spawnDeno", { code: "1", extension: "ts", stdout: "piped", stderr: "piped" }],
      ["spawnDenoRepl", { stdout: "piped", stderr: "piped" }], ["denoHttpWait", { pid: 1 }], ["denoReplEval", { pid: 1, code: "1" }],
      ["denoReplCall", { pid: 1, fn: "f", args: [] }], ["denoReplClose", { pid: 1 }], ["exposeHttp", { domain: "x", port: 80 }],
      ["vscode", { path: "/home/app", extensions: [] }]]) {
      const res = await sock.call(method, params);
      assert.equal(res.error?.constructorName, "NotSupported", method);
    }
  });

  test("processKill of a process that is gone fails with code ENOENT", async () => {
    const res = await sock.call("processKill", { pid: 999999 });
    assert.equal(res.error.code, "ENOENT");
  });
});

describe("close codes", () => {
  test("kill (DELETE) closes the socket with 1000", async () => {
    const sock = await RawSocket.open({ config: { memory_mb: 1280, volumes: [], stop_at_ms: Date.now() + 120_000 } });
    const url = new URL(env.endpoint);
    url.pathname = `/api/v3/sandbox/${sock.sandboxId}`;
    const res = await fetch(url, { method: "DELETE", headers: { authorization: `Bearer ${env.token}` } });
    assert.equal(res.status, 200);
    const { code } = await sock.closed;
    assert.equal(code, 1000);
  });

  test("the end of a sandbox's lifetime closes its sockets with 1001", async () => {
    const sock = await RawSocket.open({ config: { memory_mb: 1280, volumes: [], stop_at_ms: Date.now() + 6_000 } });
    const { code, reason } = await sock.closed;
    assert.equal(code, 1001);
    assert.match(reason, /expired|stopped/);
  });
});
