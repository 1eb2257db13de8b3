// SPDX-License-Identifier: Apache-2.0
//
// @grpc/grpc-js as a client of the public control API (proto/sbx/v1/sandboxes.proto) served by a
// real sbx-scheduler, on a real etcd, with SIMULATED nodes (build/tests/programs/sim-agents) in
// regions ams and ord — no microVMs. Admin: CreateOrg, CreateToken; Sandboxes: Create, Get, List
// (with a label filter), Delete; the statuses and messages of the common errors; /metrics; and a
// clean exit on SIGTERM. Everything runs on ephemeral loopback ports in a temporary directory and
// dies with this process.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { freePort, spawnTied } from './echo-js-server.mjs';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUILD = resolve(REPO, process.env.SBX_BUILD_DIR ?? 'build');
const SCHEDULER = resolve(BUILD, 'bin/sbx-scheduler');
const SIM_AGENTS = resolve(BUILD, 'tests/programs/sim-agents');

// The proto imports "proto/sbx/v1/state.proto", so the include path is the repository root.
// Field names as in the .proto; 64-bit integers as decimal strings (exact beyond 2^53, so compare
// them with BigInt or Number() where they are known to be small); enums by name.
const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [REPO],
});

const ID_RE = /^sbx_ams_[0-9a-hjkmnp-z]{20}$/;
const UNKNOWN_ID = 'sbx_ams_00000000000000000000';
const CALL_TIMEOUT_MS = 30000;

function requireProgram(path) {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    const rel = relative(REPO, path);
    const target = rel.startsWith('..') ? path : rel;
    const make = rel.startsWith('build/san/') ? `make SAN=1 ${target}` : `make ${target}`;
    throw new Error(`${path} is missing: build it first (${make})`);
  }
}

function loadApi() {
  const definition = protoLoader.loadSync('proto/sbx/v1/sandboxes.proto', LOADER_OPTIONS);
  const v1 = grpc.loadPackageDefinition(definition).sbx.v1;
  return { Sandboxes: v1.Sandboxes, Admin: v1.Admin };
}

/*
 * A child started with spawnTied whose stdout and stderr are drained (a full pipe would block it)
 * into `output()`, the last 64 KiB, for failure messages. stop() sends `signal`, SIGKILLs after
 * timeoutMs and resolves to { code, signal } of the exit.
 */
function startChild(command, args) {
  const child = spawnTied(command, args);
  let output = '';
  const keep = (s) => {
    output = (output + s).slice(-65536);
  };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', keep);
  const exited = new Promise((done) => child.on('exit', (code, signal) => done({ code, signal })));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stop = async (signal = 'SIGTERM', timeoutMs = 10000) => {
    if (running()) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const status = await exited;
      clearTimeout(timer);
      return status;
    }
    return exited;
  };
  return { child, output: () => output, keep, exited, running, stop };
}

// Resolves once the child printed a line matching `re` on stdout; rejects if it exits or stays
// silent for timeoutMs. Later stdout is drained into the child's output.
function waitForLine(proc, re, timeoutMs) {
  const lines = createInterface({ input: proc.child.stdout });
  return new Promise((resolveLine, reject) => {
    let seen = false;
    const timer = setTimeout(
      () => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; output: ${proc.output()}`)),
      timeoutMs,
    );
    lines.on('line', (line) => {
      if (seen || !re.test(line)) {
        proc.keep(`${line}\n`);
        return;
      }
      seen = true;
      clearTimeout(timer);
      resolveLine(line);
    });
    proc.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      if (!seen) reject(new Error(`exited (code ${code}, signal ${signal}) first; output: ${proc.output()}`));
    });
  });
}

// Polls `probe` (an async function returning true when ready) until it succeeds.
async function poll(what, probe, timeoutMs, proc) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    if (proc && !proc.running()) break;
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  const tail = proc ? `; output: ${proc.output()}` : '';
  throw new Error(`${what} was not ready within ${timeoutMs} ms (${last?.message ?? 'no answer'})${tail}`);
}

// One unary call: resolves to { err, reply }. `token` goes out as "authorization: Bearer <token>"
// metadata (grpc-js sends call credentials only over TLS; this channel is loopback plaintext).
function call(client, method, request, { token, timeoutMs = CALL_TIMEOUT_MS } = {}) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((done) => {
    client[method](request, md, { deadline: Date.now() + timeoutMs }, (err, reply) => done({ err, reply }));
  });
}

// The reply of a call that must succeed.
async function ok(client, method, request, options) {
  const { err, reply } = await call(client, method, request, options);
  assert.ifError(err);
  return reply;
}

// The error of a call that must fail with `code`.
async function fails(client, method, request, code, options) {
  const { err, reply } = await call(client, method, request, options);
  assert.equal(reply, undefined, `${method} was expected to fail`);
  assert.equal(err?.code, code, `${method}: got ${grpc.status[err?.code]}: ${err?.details}`);
  return err;
}

describe('grpc-js client against sbx-scheduler (etcd, simulated nodes in ams and ord)', () => {
  const { Sandboxes, Admin } = loadApi();
  let dir;
  let etcd;
  let sim;
  let scheduler;
  let metricsPort;
  let adminToken;
  let orgToken;
  let admin;
  let sandboxes;
  // Sandboxes created by the tests: the plain one and the labelled one.
  let first;
  let labelled;

  before(async () => {
    requireProgram(SCHEDULER);
    requireProgram(SIM_AGENTS);
    dir = mkdtempSync(join(tmpdir(), 'sbx-interop-scheduler-'));

    // etcd, answering /health before anything else starts.
    const [client, peer] = [await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${client}`;
    const peerUrl = `http://127.0.0.1:${peer}`;
    etcd = startChild('etcd', [
      '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', etcdUrl,
      '--advertise-client-urls', etcdUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `default=${peerUrl}`,
      '--name', 'default',
      '--log-level', 'warn',
    ]);
    etcd.child.stdout.on('data', etcd.keep);
    await poll('etcd', async () => {
      const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1000) });
      return res.ok && (await res.json()).health === 'true';
    }, 20000, etcd);

    // Two simulated nodes in each of ams and ord, registered before the scheduler reads the state.
    sim = startChild(SIM_AGENTS, ['--etcd', `127.0.0.1:${client}`, '--regions', 'ams,ord', '--boot-delay', '50ms']);
    await waitForLine(sim, /^ready$/, 20000);

    // The cluster key (64 hex characters, mode 0600) and the bootstrap admin token.
    const keyFile = join(dir, 'cluster.key');
    const adminTokenFile = join(dir, 'admin.token');
    writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    adminToken = `sbxadm_${randomBytes(24).toString('base64url')}`;
    writeFileSync(adminTokenFile, `${adminToken}\n`, { mode: 0o600 });

    const port = await freePort();
    metricsPort = await freePort();
    scheduler = startChild(SCHEDULER, [
      `--listen=127.0.0.1:${port}`,
      `--metrics-listen=127.0.0.1:${metricsPort}`,
      `--etcd-endpoints=127.0.0.1:${client}`,
      `--cluster-key-file=${keyFile}`,
      `--admin-token-file=${adminTokenFile}`,
      '--name=interop-0',
      '--leader-lease-ttl=3s',
      '--create-deadline=10s',
      '--reconcile-interval=200ms',
    ]);
    scheduler.child.stdout.on('data', scheduler.keep);
    admin = new Admin(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    sandboxes = new Sandboxes(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    // Ready once it has read the cluster state and registered the admin token (UNAVAILABLE or
    // UNAUTHENTICATED until then).
    await poll('sbx-scheduler', async () => {
      const { err } = await call(admin, 'ListOrgs', {}, { token: adminToken, timeoutMs: 2000 });
      return !err;
    }, 20000, scheduler);
  });

  after(async () => {
    admin?.close();
    sandboxes?.close();
    // The scheduler first (it writes to etcd while it stops), then the nodes (they revoke their
    // leases), then etcd.
    await scheduler?.stop('SIGKILL');
    await sim?.stop('SIGTERM');
    await etcd?.stop('SIGTERM');
    if (dir) {
      if (process.env.SBX_KEEP_TEST_DIRS) process.stderr.write(`kept ${dir}\n`);
      else rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Admin: CreateOrg and CreateToken with the admin token', async () => {
    const org = await ok(admin, 'CreateOrg', { name: 'interop', max_sandboxes: 5 }, { token: adminToken });
    assert.equal(org.name, 'interop');
    assert.equal(org.max_sandboxes, 5);
    assert.equal(org.max_memory_mb, 4096, 'the default maximum memory');
    assert.equal(org.max_lifetime_ms, String(30 * 60 * 1000), 'the default maximum lifetime, as a string');
    assert.ok(Math.abs(Number(org.created_at_ms) - Date.now()) < 60000, `created_at_ms ${org.created_at_ms}`);

    const again = await fails(admin, 'CreateOrg', { name: 'interop' }, grpc.status.ALREADY_EXISTS, {
      token: adminToken,
    });
    assert.equal(again.details, 'An organization with this name already exists');

    const t = await ok(admin, 'CreateToken', { org: 'interop', role: 'ROLE_USER', description: 'interop test' }, {
      token: adminToken,
    });
    assert.match(t.token, /^ddo_/);
    assert.match(t.record.token_id, /^tok_[0-9a-f]{12}$/);
    assert.equal(t.record.org, 'interop');
    assert.equal(t.record.role, 'ROLE_USER');
    assert.equal(t.record.description, 'interop test');
    orgToken = t.token;
  });

  test('Create in ams: RUNNING on a simulated ams node, with an id and an access token', async () => {
    assert.ok(orgToken, 'needs the token of the CreateToken test');
    const sb = await ok(sandboxes, 'Create', { region: 'ams' }, { token: orgToken });
    assert.equal(sb.state, 'SANDBOX_STATE_RUNNING');
    assert.match(sb.id, ID_RE);
    assert.ok(sb.node.startsWith('sim-ams-'), `placed on ${sb.node}`);
    assert.equal(sb.region, 'ams');
    assert.equal(sb.org, 'interop');
    assert.match(sb.access_token, /^sbxat1\./, 'Create returns the data-plane token');
    assert.notEqual(sb.data_address, '');
    assert.equal(sb.spec.memory_mb, 1280, 'the default memory');
    assert.equal(sb.spec.vcpus, 2, 'the default vCPUs');
    // int64 fields arrive as decimal strings (longs: String).
    assert.match(sb.created_at_ms, /^\d+$/);
    const created = BigInt(sb.created_at_ms);
    assert.ok(Math.abs(Number(created) - Date.now()) < 60000, `created_at_ms ${sb.created_at_ms}`);
    assert.equal(BigInt(sb.stop_at_ms) - created, 30n * 60n * 1000n, 'lives for the org maximum by default');
    assert.equal(sb.ended_at_ms, '0');
    first = sb;
  });

  test('Get returns the sandbox (without the access token)', async () => {
    assert.ok(first, 'needs the sandbox of the Create test');
    const sb = await ok(sandboxes, 'Get', { id: first.id }, { token: orgToken });
    assert.equal(sb.id, first.id);
    assert.equal(sb.state, 'SANDBOX_STATE_RUNNING');
    assert.equal(sb.node, first.node);
    assert.equal(sb.created_at_ms, first.created_at_ms);
    assert.equal(sb.stop_at_ms, first.stop_at_ms);
    assert.equal(sb.access_token, '', 'only Create and Attach hand out access tokens');
  });

  test('List contains it; a label filter selects the labelled sandbox', async () => {
    assert.ok(first, 'needs the sandbox of the Create test');
    labelled = await ok(sandboxes, 'Create', { region: 'ams', memory_mb: 768, labels: { team: 'interop', run: 'list' } }, {
      token: orgToken,
    });
    assert.equal(labelled.state, 'SANDBOX_STATE_RUNNING');
    assert.deepEqual(labelled.spec.labels, { team: 'interop', run: 'list' });

    const all = await ok(sandboxes, 'List', {}, { token: orgToken });
    const ids = all.sandboxes.map((s) => s.id);
    assert.ok(ids.includes(first.id), `List shows ${first.id}: ${ids}`);
    assert.ok(ids.includes(labelled.id), `List shows ${labelled.id}: ${ids}`);
    assert.equal(all.next_page_token, '');
    assert.deepEqual(ids, [...ids].sort(), 'ordered by id');

    const byLabel = await ok(sandboxes, 'List', { labels: { team: 'interop' } }, { token: orgToken });
    assert.deepEqual(byLabel.sandboxes.map((s) => s.id), [labelled.id]);
    const both = await ok(sandboxes, 'List', { labels: { team: 'interop', run: 'list' } }, { token: orgToken });
    assert.deepEqual(both.sandboxes.map((s) => s.id), [labelled.id], 'every label must match');
    const none = await ok(sandboxes, 'List', { labels: { team: 'someone-else' } }, { token: orgToken });
    assert.deepEqual(none.sandboxes, []);

    const ord = await ok(sandboxes, 'List', { region: 'ord' }, { token: orgToken });
    assert.deepEqual(ord.sandboxes, [], 'nothing runs in ord');
    const running = await ok(sandboxes, 'List', { states: ['SANDBOX_STATE_RUNNING'] }, { token: orgToken });
    assert.ok(running.sandboxes.some((s) => s.id === first.id));

    const page = await ok(sandboxes, 'List', { page_size: 1 }, { token: orgToken });
    assert.equal(page.sandboxes.length, 1);
    assert.equal(page.next_page_token, page.sandboxes[0].id, 'the page token is the last id of the page');
  });

  test('Delete with wait, after which Get shows STOPPED; a second Delete succeeds', async () => {
    assert.ok(first, 'needs the sandbox of the Create test');
    const del = await ok(sandboxes, 'Delete', { id: first.id, wait: true }, { token: orgToken, timeoutMs: 15000 });
    assert.equal(del.sandbox?.id, first.id);

    let sb;
    const end = Date.now() + 10000;
    do {
      sb = await ok(sandboxes, 'Get', { id: first.id }, { token: orgToken });
      if (sb.state !== 'SANDBOX_STATE_STOPPED' || sb.ended_at_ms === '0') await sleep(100);
    } while ((sb.state !== 'SANDBOX_STATE_STOPPED' || sb.ended_at_ms === '0') && Date.now() < end);
    assert.equal(sb.state, 'SANDBOX_STATE_STOPPED');
    assert.notEqual(sb.ended_at_ms, '0', 'the leader recorded when it ended');
    assert.equal(sb.reason, 'deleted');

    const again = await ok(sandboxes, 'Delete', { id: first.id }, { token: orgToken });
    assert.equal(again.sandbox?.state, 'SANDBOX_STATE_STOPPED', 'Delete is idempotent');
    const stopped = await ok(sandboxes, 'List', { states: ['SANDBOX_STATE_STOPPED'] }, { token: orgToken });
    assert.deepEqual(stopped.sandboxes.map((s) => s.id), [first.id]);
  });

  test('UNAUTHENTICATED without a token or with an unknown one', async () => {
    let err = await fails(sandboxes, 'Get', { id: UNKNOWN_ID }, grpc.status.UNAUTHENTICATED);
    assert.equal(err.details, 'Missing credentials: send "authorization: Bearer <token>"');
    err = await fails(sandboxes, 'Create', { region: 'ams' }, grpc.status.UNAUTHENTICATED);
    assert.equal(err.details, 'Missing credentials: send "authorization: Bearer <token>"');
    err = await fails(sandboxes, 'List', {}, grpc.status.UNAUTHENTICATED, { token: 'ddo_not-a-real-token' });
    assert.equal(err.details, 'Invalid or revoked token');
    err = await fails(admin, 'ListOrgs', {}, grpc.status.UNAUTHENTICATED);
    assert.equal(err.details, 'Missing credentials: send "authorization: Bearer <token>"');
  });

  test('PERMISSION_DENIED across roles', async () => {
    assert.ok(orgToken, 'needs the token of the CreateToken test');
    let err = await fails(sandboxes, 'List', {}, grpc.status.PERMISSION_DENIED, { token: adminToken });
    assert.equal(err.details, "Admin tokens cannot manage sandboxes; use an organization's token");
    err = await fails(admin, 'ListOrgs', {}, grpc.status.PERMISSION_DENIED, { token: orgToken });
    assert.equal(err.details, 'This call needs an admin token');
  });

  test('INVALID_ARGUMENT names the field, the value and what is allowed', async () => {
    assert.ok(orgToken, 'needs the token of the CreateToken test');
    let err = await fails(sandboxes, 'Create', { region: 'ams', memory_mb: 500 }, grpc.status.INVALID_ARGUMENT, {
      token: orgToken,
    });
    assert.equal(err.details, 'memory_mb: 500 is out of range; allowed: 768..4096 MiB');
    err = await fails(sandboxes, 'Create', { region: 'xyz' }, grpc.status.INVALID_ARGUMENT, { token: orgToken });
    assert.equal(err.details, 'region: no live node serves region "xyz"; known regions: ams, ord');
    err = await fails(sandboxes, 'Get', { id: 'not-an-id' }, grpc.status.INVALID_ARGUMENT, { token: orgToken });
    assert.equal(err.details, 'id: "not-an-id" is not a sandbox id (sbx_<region>_<20 characters>)');
  });

  test('NOT_FOUND for a well-formed id that is not the caller’s', async () => {
    assert.ok(orgToken, 'needs the token of the CreateToken test');
    let err = await fails(sandboxes, 'Get', { id: UNKNOWN_ID }, grpc.status.NOT_FOUND, { token: orgToken });
    assert.equal(err.details, `Sandbox ${UNKNOWN_ID} not found`);
    err = await fails(sandboxes, 'Delete', { id: UNKNOWN_ID }, grpc.status.NOT_FOUND, { token: orgToken });
    assert.equal(err.details, `Sandbox ${UNKNOWN_ID} not found`);
  });

  test('/metrics counts the calls; /healthz answers', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(text, /^sbx_scheduler_placements_total\{region="ams",result="placed"\} 2$/m);
    assert.match(text, /^sbx_rpc_server_requests_total\{method="\/sbx\.v1\.Sandboxes\/Create",code="OK"\} 2$/m);
    assert.match(text, /^sbx_rpc_server_requests_total\{method="\/sbx\.v1\.Sandboxes\/Get",code="NOT_FOUND"\} 1$/m);
    assert.match(text, /^sbx_scheduler_leader 1$/m, 'the only replica leads');
    assert.match(text, /^sbx_scheduler_sandboxes\{state="RUNNING",region="ams"\} 1$/m);
    const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok\n');
  });

  test('SIGTERM stops the scheduler cleanly (exit 0)', async () => {
    admin.close();
    sandboxes.close();
    const status = await scheduler.stop('SIGTERM', 15000);
    assert.deepEqual(status, { code: 0, signal: null }, `scheduler output: ${scheduler.output()}`);
  });
});
