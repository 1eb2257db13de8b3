// SPDX-License-Identifier: Apache-2.0
//
// The SDK's README examples: sh with pwd, interpolation, .text(), .json(), a failing command's
// error and code; and env get/set/delete/toObject.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { SandboxCommandError } from "@deno/sandbox";
import { cleanup, create } from "./lib/common.mjs";

describe("README examples", () => {
  let sandbox;
  before(async () => {
    sandbox = await create();
  });
  after(cleanup);

  test("the sandbox id has the SDK's form", () => {
    assert.match(sandbox.id, /^sbx_[a-z]{3}_[0-9a-hjkmnp-z]{20}$/);
  });

  test("sh`pwd` runs in the user's home", async () => {
    assert.equal(await sandbox.sh`pwd`.text(), "/home/app\n");
  });

  test("interpolated values are escaped, arrays expand to words", async () => {
    const spaced = "a b";
    const words = ["x", "y'z", ""];
    const out = await sandbox.sh`printf '[%s]' ${spaced} ${words}`.text();
    assert.equal(out, "[a b][x][y'z][]");
  });

  test(".json() parses stdout", async () => {
    const data = await sandbox.sh`echo '{"answer":42,"list":[1,2]}'`.json();
    assert.deepEqual(data, { answer: 42, list: [1, 2] });
  });

  test(".text() of a failing command throws with the code", async () => {
    await assert.rejects(sandbox.sh`exit 3`.text(), (e) => e instanceof SandboxCommandError && e.code === 3);
  });

  test("a failing command throws SandboxCommandError with its code and stderr", async () => {
    // Awaiting the builder runs it; only the last modifier counts (an SDK quirk), here stderr.
    await assert.rejects(async () => await sandbox.sh`echo oops >&2; exit 3`.stderr("piped"), (e) => {
      assert.ok(e instanceof SandboxCommandError);
      assert.equal(e.code, 3);
      assert.match(e.message, /exit code 3/);
      assert.match(e.message, /oops/);
      return true;
    });
  });

  test("noThrow() returns the result of a failing command", async () => {
    const r = await sandbox.sh`exit 7`.noThrow();
    assert.equal(r.status.code, 7);
    assert.equal(r.status.success, false);
  });

  test("sudo works without a password", async () => {
    assert.equal(await sandbox.sh`sudo id -u`.text(), "0\n");
  });

  test("env get/set/delete/toObject, and later processes see the variables", async () => {
    await sandbox.env.set("GREETING", "hello sbx");
    assert.equal(await sandbox.env.get("GREETING"), "hello sbx");
    assert.equal(await sandbox.sh`echo "$GREETING"`.text(), "hello sbx\n");
    const all = await sandbox.env.toObject();
    assert.equal(all.GREETING, "hello sbx");
    assert.equal(all.HOME, "/home/app");
    await sandbox.env.delete("GREETING");
    assert.equal(await sandbox.env.get("GREETING"), undefined);
    assert.equal((await sandbox.env.toObject()).GREETING, undefined);
  });

  test("create({env}) sets variables before the sandbox is handed over", async () => {
    const other = await create({ env: { FROM_CREATE: "yes" }, timeout: "2m" });
    assert.equal(await other.sh`echo $FROM_CREATE`.text(), "yes\n");
  });
});
