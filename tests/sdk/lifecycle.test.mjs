// SPDX-License-Identifier: Apache-2.0
//
// Lifetimes and the control plane: a "session" sandbox ends with its socket; a sandbox with a
// duration outlives it and can be extended, connected to again and killed; sandboxes.list with
// labels; handshake refusals (bad token, out-of-range memory sent raw, an unknown sandbox).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client, ConnectionEstablishmentError, InvalidTokenError, Sandbox } from "@deno/sandbox";
import { cleanup, create, env, RawSocket, sleep, state, waitFor, waitForSlots } from "./lib/common.mjs";

const stopped = (s) => s === "SANDBOX_STATE_STOPPING" || s === "SANDBOX_STATE_STOPPED";

describe("lifetimes", () => {
  after(cleanup);

  test('timeout "session": closing the SDK connection stops the sandbox', async () => {
    const sandbox = await Sandbox.create();
    const id = sandbox.id;
    assert.equal(await sandbox.sh`echo alive`.text(), "alive\n");
    assert.equal(await state(id), "SANDBOX_STATE_RUNNING");
    await sandbox.close();
    // The scheduler stops it once the gateway's Attach stream ends (after its grace period).
    await waitFor("the session sandbox to stop", async () => stopped(await state(id)), 30_000, 500);
  });

  test("a duration outlives the connection; connect, extendTimeout and kill", async () => {
    const sandbox = await create({ timeout: "2m" });
    const id = sandbox.id;
    await sandbox.fs.writeTextFile("/tmp/marker", "still here");
    await sandbox.close();
    // Longer than the session grace period: a session sandbox would be stopping by now.
    await sleep(7000);
    assert.equal(await state(id), "SANDBOX_STATE_RUNNING");

    const again = await Sandbox.connect(id);
    assert.equal(again.id, id);
    assert.equal(await again.fs.readTextFile("/tmp/marker"), "still here");

    const before = Date.now();
    const until = await again.extendTimeout("5m");
    assert.ok(until instanceof Date);
    assert.ok(Math.abs(until.getTime() - (before + 5 * 60_000)) < 10_000, `granted ${until.toISOString()}`);

    // A second connection to the same sandbox is closed by the kill as well.
    const third = await Sandbox.connect({ id });
    let thirdClosed = false;
    third.closed.then(() => (thirdClosed = true));
    await again.kill();
    await waitFor("the other connection to close", () => thirdClosed, 10_000, 50);
    await waitFor("the killed sandbox to stop", async () => stopped(await state(id)), 30_000, 500);
  });

  test("extendTimeout of a session sandbox is refused", async () => {
    const sandbox = await create();
    await assert.rejects(sandbox.extendTimeout("1m"), /session/);
  });
});

describe("control plane", () => {
  after(cleanup);

  test("sandboxes.list filters by labels", async () => {
    const suite = `sdk${Date.now().toString(36)}`;
    const [a, b] = await Promise.all([
      create({ timeout: "2m", labels: { suite, kind: "a" } }),
      create({ timeout: "2m", labels: { suite, kind: "b" } }),
    ]);
    const client = new Client();
    const both = await client.sandboxes.list({ labels: { suite } });
    assert.deepEqual(both.map((s) => s.id).sort(), [a.id, b.id].sort());
    const onlyA = await client.sandboxes.list({ labels: { suite, kind: "a" } });
    assert.equal(onlyA.length, 1);
    assert.equal(onlyA[0].id, a.id);
    assert.equal(onlyA[0].status, "running");
    assert.deepEqual(onlyA[0].labels, { suite, kind: "a" });
    assert.equal(onlyA[0].region, "ams");
    assert.ok(!Number.isNaN(new Date(onlyA[0].createdAt).getTime()));
    assert.equal(onlyA[0].stoppedAt, null);
  });

  test("a bad token is refused as InvalidTokenError", async () => {
    await assert.rejects(Sandbox.create({ token: "ddo_not-a-real-token" }), (e) => e instanceof InvalidTokenError);
  });

  test("an out-of-range memory sent raw in the config header is refused, and nothing is created", async () => {
    const client = new Client();
    const before = (await client.sandboxes.list()).length;
    for (const memory_mb of [100, 100000, -1, 1280.5, "1280"]) {
      await assert.rejects(RawSocket.open({ config: { memory_mb, volumes: [] } }), (e) => {
        assert.equal(e.status, 400, e.body);
        const body = JSON.parse(e.body);
        assert.equal(body.code, "INVALID_CONFIG");
        assert.match(body.message, /memory_mb/);
        return true;
      });
    }
    await assert.rejects(RawSocket.open({ config: "not base64!" }), (e) => e.status === 400);
    await assert.rejects(RawSocket.open({ config: { memory_mb: 1280, volumes: [], surprise: 1 } }), (e) => e.status === 400);
    await assert.rejects(RawSocket.open({ config: { memory_mb: 1280, volumes: [{ volume: "v", path: "/v" }] } }),
      (e) => e.status === 501 && JSON.parse(e.body).code === "NOT_SUPPORTED");
    assert.equal((await client.sandboxes.list()).length, before);
  });

  test("connecting to a sandbox that does not exist fails the handshake with 404", async () => {
    await assert.rejects(Sandbox.connect("sbx_ams_00000000000000000000"), (e) => {
      assert.ok(e instanceof ConnectionEstablishmentError);
      assert.equal(e.status, 404);
      return true;
    });
  });

  test("the expose endpoints answer NOT_SUPPORTED, never a silent success", async () => {
    const sandbox = await create();
    await assert.rejects(sandbox.exposeHttp({ port: 8080 }), /501.*NOT_SUPPORTED/s);
    await assert.rejects(sandbox.exposeSsh(), /501.*NOT_SUPPORTED/s);
  });
});

describe("quota", () => {
  after(cleanup);

  test("the 6th concurrent sandbox surfaces the quota message through the SDK's error; kill one, create one works", { skip: !process.env.SBX_SDK_QUOTA_TOKEN && "SBX_SDK_QUOTA_TOKEN (an org with quota 5) is not set" }, async () => {
    const token = process.env.SBX_SDK_QUOTA_TOKEN;
    // Spread over both regions: one node alone has fewer than five slots.
    const regions = ["ams", "ams", "ord", "ord", "ord"];
    await waitForSlots("ams", 2);
    await waitForSlots("ord", 3);
    const made = await Promise.allSettled(regions.map((r) =>
      create({ token, timeout: "3m", memory: "768MiB", ...(r === "ord" ? { sandboxEndpoint: env.ordEndpoint } : {}) })));
    for (const m of made) assert.equal(m.status, "fulfilled", String(m.reason));
    await assert.rejects(Sandbox.create({ token, timeout: "3m", memory: "768MiB" }), (e) => {
      assert.ok(e instanceof ConnectionEstablishmentError, String(e));
      assert.equal(e.status, 429);
      assert.equal(e.code, "RESOURCE_EXHAUSTED");
      assert.match(e.message, /quota of 5 concurrent sandboxes/);
      return true;
    });

    // Kill one, create one: the Create waits for the quota (and the slot) the killed sandbox gives
    // back once its node has stopped it, instead of failing in the meantime.
    await made[0].value.kill();
    const again = await create({ token, timeout: "3m", memory: "768MiB" });
    assert.equal(await again.sh`echo again`.text(), "again\n");
  });
});
