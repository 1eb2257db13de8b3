// SPDX-License-Identifier: Apache-2.0
//
// Processes: spawn with streamed stdout and stderr and piped stdin, kill with a signal and the
// resulting status, output(), and the errors of what cannot be spawned or killed.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cleanup, create } from "./lib/common.mjs";

async function readAll(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks).toString("utf8");
}

describe("processes", () => {
  let sandbox;
  before(async () => {
    sandbox = await create();
  });
  after(cleanup);

  test("spawn streams stdout and stderr separately", async () => {
    const child = await sandbox.spawn("bash", {
      args: ["-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done"],
      stdout: "piped",
      stderr: "piped",
    });
    assert.ok(Number.isInteger(child.pid) && child.pid > 0);
    const [out, err, status] = await Promise.all([readAll(child.stdout), readAll(child.stderr), child.status]);
    assert.equal(out, "out1\nout2\nout3\n");
    assert.equal(err, "err1\nerr2\nerr3\n");
    assert.deepEqual(status, { success: true, code: 0, signal: null, oom: false });
  });

  test("piped stdin reaches the process, and its end is EOF", async () => {
    const child = await sandbox.spawn("tr", { args: ["a-z", "A-Z"], stdin: "piped", stdout: "piped", stderr: "null" });
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("hello "));
    await writer.write(new TextEncoder().encode("stdin"));
    await writer.close();
    const out = await readAll(child.stdout);
    assert.equal(out, "HELLO STDIN");
    assert.equal((await child.status).code, 0);
  });

  test("kill with a signal: the status names it and the code is 128+N", async () => {
    const child = await sandbox.spawn("sleep", { args: ["60"], stdout: "null", stderr: "null" });
    await child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.success, false);
    assert.equal(status.signal, "SIGKILL");
    assert.equal(status.code, 137);
  });

  test("kill defaults to SIGTERM", async () => {
    const child = await sandbox.spawn("sleep", { args: ["60"], stdout: "null", stderr: "null" });
    await child.kill();
    const status = await child.status;
    assert.equal(status.signal, "SIGTERM");
    assert.equal(status.code, 143);
  });

  test("killing a process that ended is not an error", async () => {
    const child = await sandbox.spawn("true", { stdout: "null", stderr: "null" });
    await child.status;
    await child.kill("SIGTERM");
  });

  test("output() collects stdout, stderr and the status", async () => {
    const child = await sandbox.spawn("bash", { args: ["-c", "echo to-out; echo to-err >&2; exit 5"], stdout: "piped", stderr: "piped" });
    const out = await child.output();
    assert.equal(out.stdoutText, "to-out\n");
    assert.equal(out.stderrText, "to-err\n");
    assert.equal(out.status.code, 5);
    assert.equal(out.status.success, false);
  });

  test("spawn honours cwd, env and clearEnv", async () => {
    const child = await sandbox.spawn("bash", {
      args: ["-c", "pwd; echo ${A:-unset}; echo ${HOME:-nohome}"],
      cwd: "/tmp",
      env: { A: "1" },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    });
    const out = await child.output();
    assert.equal(out.stdoutText, "/tmp\n1\nnohome\n");
  });

  test("a large output arrives complete and in order", async () => {
    const child = await sandbox.spawn("bash", { args: ["-c", "seq 1 200000"], stdout: "piped", stderr: "null" });
    const out = await child.output();
    const lines = out.stdoutText.trimEnd().split("\n");
    assert.equal(lines.length, 200000);
    assert.equal(lines[199999], "200000");
  });

  test("a missing command fails to spawn with NotFound", async () => {
    await assert.rejects(sandbox.spawn("no-such-command-xyz", { stdout: "null", stderr: "null" }), (e) => {
      assert.equal(e.code, "ENOENT");
      assert.match(e.message, /no-such-command-xyz/);
      return true;
    });
  });

  test("an AbortSignal kills the process", async () => {
    const ac = new AbortController();
    const child = await sandbox.spawn("sleep", { args: ["60"], stdout: "null", stderr: "null", signal: ac.signal });
    ac.abort();
    const status = await child.status;
    assert.equal(status.signal, "SIGTERM");
  });
});
