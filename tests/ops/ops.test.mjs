// SPDX-License-Identifier: Apache-2.0
//
// The monitoring files in deploy/ against the real daemons: starts etcd, sbx-scheduler, simulated
// nodes (build/tests/programs/sim-agents, region ord) and a real sbx-agent (region ams, cordoned,
// so that it never boots a microVM), makes a few calls so that most metric families get samples,
// scrapes every /metrics page, and checks that
//  - every metric that deploy/prometheus/rules/*.yml and deploy/grafana/*.json use is exported
//    (or defined by a recording rule), with the labels it carries;
//  - the checker itself flags made-up names and labels (negative control, tests/ops/fixtures/);
//  - docs/operations.md documents every exported sbx metric with its type and labels, and nothing
//    else, and lists every alert.
// Labels are taken from the metric registrations in the C sources, and those are checked against
// every scraped family that has samples. sbx-agent needs root; without it the suite is skipped.
// Everything runs on ephemeral loopback ports in a temporary directory and dies with this process.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { freePort, spawnTied } from '../interop/echo-js-server.mjs';
import { check, formatProblems, parseExposition, sourceLabels, PROMETHEUS_LABELS } from './metric-names.mjs';

const require = createRequire(new URL('../interop/package.json', import.meta.url));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const YAML = require('yaml');

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUILD = resolve(REPO, process.env.SBX_BUILD_DIR ?? 'build');
const BIN = (name) => resolve(BUILD, 'bin', name);
const SIM_AGENTS = resolve(BUILD, 'tests/programs/sim-agents');

const RULES = ['deploy/prometheus/rules/sbx-recording.yml', 'deploy/prometheus/rules/sbx-alerts.yml'].map((f) => resolve(REPO, f));
const DASHBOARDS = readdirSync(resolve(REPO, 'deploy/grafana'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => resolve(REPO, 'deploy/grafana', f));
const FIXTURES = resolve(REPO, 'tests/ops/fixtures');

// Labels Prometheus attaches to targets: its own (job, instance) and those of the example agent
// targets (region, node).
function targetLabels() {
  const targets = YAML.parse(readFileSync(resolve(REPO, 'deploy/prometheus/targets/sbx-agents.yml'), 'utf8'));
  const extra = new Set(targets.flatMap((t) => Object.keys(t.labels ?? {})));
  return [...PROMETHEUS_LABELS, ...extra];
}

function sourceFiles() {
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(resolve(REPO, dir), { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.c')) out.push(resolve(REPO, p));
    }
  };
  ['common', 'scheduler', 'agent'].forEach(walk);
  return out;
}

// A child that dies with this process; its output is kept (last 64 KiB) for failure messages.
function start(command, args) {
  const child = spawnTied(command, args);
  let output = '';
  const keep = (s) => (output = (output + s).slice(-65536));
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise((done) => child.on('exit', (code, signal) => done({ code, signal })));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stop = async (timeoutMs = 15000) => {
    if (running()) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
  };
  return { child, output: () => output, running, stop, name: command.split('/').pop() };
}

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
  throw new Error(`${what} not ready within ${timeoutMs} ms (${last?.message ?? 'no answer'})${proc ? `; output: ${proc.output()}` : ''}`);
}

function call(client, method, request, token) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((done) => {
    client[method](request, md, { deadline: Date.now() + 15000 }, (err, reply) => done({ err, reply }));
  });
}

async function expectCode(client, method, request, token, code) {
  const { err, reply } = await call(client, method, request, token);
  assert.equal(err?.code ?? grpc.status.OK, code, `${method}: ${err?.details ?? 'OK'}`);
  return reply;
}

const isRoot = process.getuid?.() === 0;

describe('deploy/ monitoring files against the metrics of real daemons', { skip: !isRoot && 'sbx-agent needs root' }, () => {
  const procs = [];
  let dir;
  const expositions = {};
  const readiness = {};

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sbx-ops-'));
    // The VMM user must be able to traverse the agent's state directory (the agent checks it).
    chmodSync(dir, 0o711);

    const [etcdPort, peerPort] = [await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = start('etcd', [
      '--name=default', `--data-dir=${join(dir, 'etcd')}`, '--log-level=warn',
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
    ]);
    procs.push(etcd);
    await poll('etcd', async () => (await fetch(`${etcdUrl}/health`)).ok, 20000, etcd);
    const endpoints = `127.0.0.1:${etcdPort}`;

    const keyFile = join(dir, 'cluster.key');
    writeFileSync(keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const adminToken = `sbxadm_${randomBytes(24).toString('base64url')}`;
    writeFileSync(join(dir, 'admin.token'), `${adminToken}\n`, { mode: 0o600 });

    // One simulated node in ord: sandboxes placed there "boot" in 50 ms.
    const sim = start(SIM_AGENTS, ['--etcd', endpoints, '--regions', 'ord', '--nodes', '1', '--boot-delay', '50ms', '--prefix', 'ops-sim']);
    procs.push(sim);
    await poll('sim-agents', async () => sim.output().includes('ready'), 20000, sim);

    const [apiPort, schedMetrics, dataPort, agentMetrics] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const scheduler = start(BIN('sbx-scheduler'), [
      `--listen=127.0.0.1:${apiPort}`, `--metrics-listen=127.0.0.1:${schedMetrics}`,
      `--etcd-endpoints=${endpoints}`, `--cluster-key-file=${keyFile}`,
      `--admin-token-file=${join(dir, 'admin.token')}`, '--name=ops-sched', '--reconcile-interval=200ms',
    ]);
    procs.push(scheduler);

    // The image files only have to exist: this agent is cordoned and never boots a guest.
    mkdirSync(join(dir, 'image'));
    for (const f of ['vmlinux', 'initramfs.cpio', 'rootfs.ext4', 'data-template.ext4']) writeFileSync(join(dir, 'image', f), '');
    const node = `ops-${process.pid}`;
    const agent = start(BIN('sbx-agent'), [
      `--name=${node}`, '--region=ams', `--listen=127.0.0.1:${dataPort}`, `--metrics-listen=127.0.0.1:${agentMetrics}`,
      `--etcd-endpoints=${endpoints}`, `--cluster-key-file=${keyFile}`, `--state-dir=${join(dir, 'agent')}`,
      `--image-dir=${join(dir, 'image')}`, '--vmm=qemu', '--accel=tcg',
    ]);
    procs.push(agent);
    await poll('sbx-agent /readyz', async () => (await fetch(`http://127.0.0.1:${agentMetrics}/readyz`)).ok, 30000, agent);

    const load = (file) => grpc.loadPackageDefinition(
      protoLoader.loadSync(file, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [REPO] }),
    ).sbx.v1;
    const { Sandboxes, Admin } = load('proto/sbx/v1/sandboxes.proto');
    const { SandboxData } = load('proto/sbx/v1/data.proto');
    const admin = new Admin(`127.0.0.1:${apiPort}`, grpc.credentials.createInsecure());
    const sandboxes = new Sandboxes(`127.0.0.1:${apiPort}`, grpc.credentials.createInsecure());
    const data = new SandboxData(`127.0.0.1:${dataPort}`, grpc.credentials.createInsecure());
    try {
      await poll('sbx-scheduler', async () => !(await call(admin, 'ListOrgs', {}, adminToken)).err, 20000, scheduler);
      // /readyz of a replica that has read the state, and of one that cannot reach etcd.
      const ready = await fetch(`http://127.0.0.1:${schedMetrics}/readyz`);
      readiness.serving = { status: ready.status, text: await ready.text() };
      const lonelyMetrics = await freePort();
      const lonely = start(BIN('sbx-scheduler'), [
        `--listen=127.0.0.1:${await freePort()}`, `--metrics-listen=127.0.0.1:${lonelyMetrics}`,
        `--etcd-endpoints=127.0.0.1:${await freePort()}`, `--cluster-key-file=${keyFile}`, '--name=ops-lonely',
      ]);
      procs.push(lonely);
      await poll('sbx-scheduler without etcd: /healthz', async () => (await fetch(`http://127.0.0.1:${lonelyMetrics}/healthz`)).ok, 20000, lonely);
      const notReady = await fetch(`http://127.0.0.1:${lonelyMetrics}/readyz`);
      readiness.withoutEtcd = { status: notReady.status, text: await notReady.text() };
      // Waiting for etcd must not be a busy loop (gRPC fails each read at once while etcd is down).
      const cpu = () => {
        const fields = readFileSync(`/proc/${lonely.child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks
      };
      const ticks0 = cpu();
      await sleep(1000);
      readiness.withoutEtcdCpuTicks = cpu() - ticks0;
      // Nothing may ever be placed on the real agent.
      await expectCode(admin, 'CordonNode', { name: node, cordon: true }, adminToken, grpc.status.OK);
      await expectCode(admin, 'CreateOrg', { name: 'ops', max_sandboxes: 1 }, adminToken, grpc.status.OK);
      const { token } = await expectCode(admin, 'CreateToken', { org: 'ops', role: 'ROLE_USER' }, adminToken, grpc.status.OK);

      // placements: no_capacity (the only ams node is cordoned), invalid, placed; then the quota.
      await expectCode(sandboxes, 'Create', { region: 'ams' }, token, grpc.status.RESOURCE_EXHAUSTED);
      await expectCode(sandboxes, 'Create', { region: 'ord', memory_mb: 1 }, token, grpc.status.INVALID_ARGUMENT);
      const sb = await expectCode(sandboxes, 'Create', { region: 'ord' }, token, grpc.status.OK);
      await expectCode(sandboxes, 'Create', { region: 'ord' }, token, grpc.status.RESOURCE_EXHAUSTED);
      await expectCode(sandboxes, 'List', {}, 'not-a-token', grpc.status.UNAUTHENTICATED);

      // The agent's data plane: a valid token for a sandbox it does not run, and a bad token.
      await expectCode(data, 'Stat', { sandbox_id: sb.id, path: '/' }, sb.access_token, grpc.status.NOT_FOUND);
      await expectCode(data, 'Stat', { sandbox_id: sb.id, path: '/' }, 'not-a-token', grpc.status.UNAUTHENTICATED);

      // An end for the reconciler to record.
      await expectCode(sandboxes, 'Delete', { id: sb.id, wait: true }, token, grpc.status.OK);
      await poll('the reconciler', async () => {
        const text = await (await fetch(`http://127.0.0.1:${schedMetrics}/metrics`)).text();
        return text.includes('sbx_scheduler_reconcile_actions_total{action="finalize"}');
      }, 10000, scheduler);
    } finally {
      admin.close();
      sandboxes.close();
      data.close();
    }

    for (const [name, url] of [
      ['sbx-scheduler', `http://127.0.0.1:${schedMetrics}/metrics`],
      ['sbx-agent', `http://127.0.0.1:${agentMetrics}/metrics`],
      ['etcd', `${etcdUrl}/metrics`],
    ]) {
      const res = await fetch(url);
      assert.equal(res.status, 200, `${url}: HTTP ${res.status}`);
      expositions[name] = await res.text();
    }
  });

  after(async () => {
    // Agent first (it deregisters from etcd), etcd last.
    for (const p of [...procs].reverse()) await p.stop();
    if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  });

  // Exported names of all three, and label sets: the sources' registrations for sbx metrics,
  // the scraped samples for etcd's.
  function known() {
    const names = new Set();
    const labels = sourceLabels(sourceFiles());
    for (const [job, text] of Object.entries(expositions)) {
      const x = parseExposition(text);
      x.names.forEach((n) => names.add(n));
      if (job === 'etcd') for (const [n, f] of x.families) if (f.samples > 0 && !labels.has(n)) labels.set(n, f.labels);
    }
    return { names, labels, targetLabels: targetLabels() };
  }

  test('the sources declare every exported sbx metric with the labels its samples carry', () => {
    const declared = sourceLabels(sourceFiles());
    const problems = [];
    for (const job of ['sbx-scheduler', 'sbx-agent']) {
      for (const [name, f] of parseExposition(expositions[job]).families) {
        if (!declared.has(name)) problems.push(`${job}: ${name} is exported but not found in the sources' registrations`);
        else if (f.samples > 0 && [...f.labels].sort().join() !== [...declared.get(name)].sort().join())
          problems.push(`${job}: ${name} has labels {${[...f.labels]}} but is registered with {${[...declared.get(name)]}}`);
      }
    }
    assert.equal(problems.length, 0, `\n${problems.join('\n')}`);
  });

  test("sbx-scheduler's /readyz says whether the replica has read the cluster state, and it waits for etcd without spinning", () => {
    assert.deepEqual(readiness.serving, { status: 200, text: 'ready\n' });
    assert.equal(readiness.withoutEtcd.status, 503);
    assert.match(readiness.withoutEtcd.text, /reading the cluster state from etcd/);
    // A second is 100 ticks; waiting with a back-off takes about none of it.
    assert.ok(readiness.withoutEtcdCpuTicks < 20, `${readiness.withoutEtcdCpuTicks} ticks of CPU in 1 s without etcd`);
  });

  test('the rules and the dashboards use only exported metrics and labels', () => {
    const problems = check([...RULES, ...DASHBOARDS], known());
    assert.equal(problems.length, 0, `\n${formatProblems(problems)}`);
  });

  test('negative control: made-up names and labels are reported', () => {
    const problems = check([join(FIXTURES, 'unknown-metrics.rules.yml'), join(FIXTURES, 'unknown-metrics.dashboard.json')], known());
    const got = problems.map((p) => `${p.where}: ${p.problem}`).sort();
    assert.deepEqual(got, [
      'unknown-metrics.dashboard.json: panel "bare histogram" A: unknown metric sbx_agent_boot_seconds (a histogram: query sbx_agent_boot_seconds_bucket, _sum or _count)',
      'unknown-metrics.dashboard.json: panel "wrong label" A: sbx_agent_exec_total has no label "kind" (it has: result)',
      'unknown-metrics.dashboard.json: variable $bogus: unknown metric sbx_agent_bogus_info (no daemon exports it)',
      'unknown-metrics.rules.yml: fixture: alert MadeUp: unknown metric sbx_scheduler_made_up_total (no daemon exports it)',
      'unknown-metrics.rules.yml: fixture: record job:sbx_uses_undefined:rate5m: unknown metric job:sbx_never_recorded:rate5m (no recording rule defines it)',
      'unknown-metrics.rules.yml: fixture: record job:sbx_wrong_etcd:max: unknown metric etcd_server_has_no_such_thing (no daemon exports it)',
    ]);
  });

  test('docs/operations.md documents every exported sbx metric with its type and labels', () => {
    const declared = sourceLabels(sourceFiles());
    const exported = new Map();
    for (const job of ['sbx-scheduler', 'sbx-agent']) for (const [n, f] of parseExposition(expositions[job]).families) exported.set(n, f.type);
    const documented = new Map();
    const problems = [];
    for (const line of readFileSync(resolve(REPO, 'docs/operations.md'), 'utf8').split('\n')) {
      const m = /^\| `(sbx_[a-z0-9_]+)` \|([^|]*)\|([^|]*)\|/.exec(line);
      if (!m) continue;
      const [, name, type, labelCell] = m;
      documented.set(name, true);
      if (!exported.has(name)) {
        problems.push(`${name} is documented but not exported`);
        continue;
      }
      if (type.trim() !== exported.get(name)) problems.push(`${name} is documented as ${type.trim()}, exported as ${exported.get(name)}`);
      const labels = [...labelCell.matchAll(/`([a-z_]+)`/g)].map((x) => x[1]).sort().join();
      if (labels !== [...declared.get(name)].sort().join()) problems.push(`${name}: documented labels {${labels}}, registered {${[...declared.get(name)].sort()}}`);
    }
    for (const name of exported.keys()) if (!documented.has(name)) problems.push(`${name} is exported but not documented (a table row "| \`${name}\` | type | labels | meaning |")`);
    assert.equal(problems.length, 0, `docs/operations.md:\n${problems.join('\n')}`);
  });

  test('docs/operations.md lists every alert of the rules', () => {
    const rules = new Set();
    for (const f of RULES) for (const g of YAML.parse(readFileSync(f, 'utf8')).groups) for (const r of g.rules) if (r.alert) rules.add(r.alert);
    const docs = new Set();
    for (const line of readFileSync(resolve(REPO, 'docs/operations.md'), 'utf8').split('\n')) {
      const m = /^\| `((?:Sbx|Etcd)[A-Za-z]+)` \|/.exec(line);
      if (m) docs.add(m[1]);
    }
    assert.deepEqual([...docs].filter((a) => !rules.has(a)), [], 'documented alerts that the rules do not define');
    assert.deepEqual([...rules].filter((a) => !docs.has(a)), [], 'alerts missing from the table in docs/operations.md');
  });

  test('the dashboard is importable: schema, unique panel ids, the datasource variable everywhere', () => {
    for (const file of DASHBOARDS) {
      const d = JSON.parse(readFileSync(file, 'utf8'));
      assert.ok(d.schemaVersion >= 36, `${file}: schemaVersion ${d.schemaVersion}`);
      assert.ok(d.uid && d.title, `${file}: uid and title`);
      const ds = d.templating.list.find((v) => v.type === 'datasource');
      assert.equal(ds?.query, 'prometheus', `${file}: a Prometheus datasource variable`);
      const ids = new Set();
      const visit = (panels) => {
        for (const p of panels ?? []) {
          assert.ok(!ids.has(p.id), `${file}: panel id ${p.id} twice`);
          ids.add(p.id);
          if (p.type !== 'row') {
            assert.equal(p.datasource?.uid, `\${${ds.name}}`, `${file}: panel "${p.title}" datasource`);
            assert.ok(p.targets?.length > 0, `${file}: panel "${p.title}" has no query`);
            for (const t of p.targets) assert.equal(t.datasource?.uid, `\${${ds.name}}`, `${file}: panel "${p.title}" target ${t.refId}`);
          }
          visit(p.panels);
        }
      };
      visit(d.panels);
    }
  });
});
