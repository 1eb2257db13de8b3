// SPDX-License-Identifier: Apache-2.0
//
// allowNet and secrets end to end, and sandbox.fetch() from inside the sandbox network, against the
// dev cluster's fake internet (deploy/dev/fake-internet: *.sbx.test names, echoing web servers;
// nothing leaves the machine). Skipped when the cluster runs without it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { cleanup, create } from "./lib/common.mjs";

const fake = process.env.SBX_DEV_INET_CA ? false : "the cluster has no fake internet (SBX_DEV_INET_CA is not set)";

describe("egress", { skip: fake }, () => {
  after(cleanup);

  describe("allowNet", () => {
    let sandbox;
    before(async () => {
      sandbox = await create({ allowNet: ["allowed.sbx.test", "*.wild.sbx.test"] });
    });

    test("an allowed host answers; sandbox.fetch() goes out through the sandbox's network", async () => {
      const res = await sandbox.fetch("http://allowed.sbx.test/hello?x=1", { headers: { "x-probe": "sdk" } });
      assert.equal(res.status, 200);
      assert.equal(res.statusText, "OK");
      const text = await res.text();
      assert.match(text, /GET \/hello\?x=1/);
      assert.match(text, /x-probe: sdk/i);
    });

    test("fetch with a body and a method", async () => {
      const res = await sandbox.fetch("http://allowed.sbx.test/post", { method: "POST", body: "payload-123" });
      assert.equal(res.status, 200);
      assert.match(await res.text(), /POST \/post[\s\S]*payload-123/);
    });

    test("a wildcard entry allows the names below it", async () => {
      const out = await sandbox.sh`curl -s http://a.wild.sbx.test/`.text();
      assert.match(out, /Host: a\.wild\.sbx\.test/i);
    });

    test("a host outside the list cannot be reached, from sh or from fetch", async () => {
      const r = await sandbox.sh`curl -s -m 5 http://other.sbx.test/`.noThrow();
      assert.notEqual(r.status.code, 0);
      await assert.rejects(sandbox.fetch("http://other.sbx.test/"), (e) => e instanceof TypeError && /fetch failed/.test(e.message));
    });
  });

  test("secrets: the sandbox sees a placeholder; the allowed host receives the value", async () => {
    const sandbox = await create({
      allowNet: ["allowed.sbx.test"],
      secrets: { API_TOKEN: { hosts: ["allowed.sbx.test"], value: "s3cr3t-value" } },
    });
    const seen = await sandbox.sh`echo $API_TOKEN`.text();
    assert.doesNotMatch(seen, /s3cr3t-value/);
    assert.match(seen, /^sbx_secret_/);
    const echoed = await sandbox.sh`curl -s -H "Authorization: Bearer $API_TOKEN" https://allowed.sbx.test/`.text();
    assert.match(echoed, /Authorization: Bearer s3cr3t-value/i);
  });

  test("allowNet: [] means no egress at all", async () => {
    const sandbox = await create({ allowNet: [] });
    const r = await sandbox.sh`curl -s -m 5 http://allowed.sbx.test/`.noThrow();
    assert.notEqual(r.status.code, 0);
  });
});
