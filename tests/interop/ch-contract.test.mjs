// SPDX-License-Identifier: Apache-2.0
//
// The contract test of the Cloud Hypervisor driver (agent/agent-vmm-ch.c). No Cloud Hypervisor runs
// here, nor anywhere this project has been tested: a fake one on a unix socket records every request
// and answers as the published OpenAPI file says the real one answers, and every request body is
// validated against that file's schema for its endpoint. The C program ch-contract-client
// (tests/programs/) drives the driver as the agent does.
//
// The OpenAPI file is the one the driver was written against: SBX_CH_OPENAPI names it, by default
// third_party/cloud-hypervisor/openapi.yaml.
import assert from 'node:assert/strict';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import Ajv from 'ajv';
import YAML from 'yaml';

import { runToExit } from './echo-js-server.mjs';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUILD = resolve(REPO, process.env.SBX_BUILD_DIR ?? 'build');
const CLIENT = resolve(BUILD, 'tests/programs/ch-contract-client');
const SPEC = resolve(REPO, process.env.SBX_CH_OPENAPI ?? 'third_party/cloud-hypervisor/openapi.yaml');
const API = '/api/v1';
// The pid the fake VMM reports in its ping answer; the driver records it as vmm.pid.
const FAKE_PID = 4242;

// ---- the OpenAPI file as a validator ----

// OpenAPI 3.0 integer formats, checked for range (JSON Schema itself does not know them).
const INTEGER_FORMATS = {
  int8: [-(2 ** 7), 2 ** 7 - 1],
  uint8: [0, 2 ** 8 - 1],
  int16: [-(2 ** 15), 2 ** 15 - 1],
  uint16: [0, 2 ** 16 - 1],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  int64: [-(2 ** 63), 2 ** 63 - 1],
};

// OpenAPI lets objects carry properties the schema does not name. The driver must send only fields
// the file names (a misspelt option would at best be ignored by the VMM), so every object schema that
// lists its properties is closed here.
function closeObjects(node) {
  if (Array.isArray(node)) {
    node.forEach(closeObjects);
  } else if (node && typeof node === 'object') {
    if (node.properties && node.additionalProperties === undefined) node.additionalProperties = false;
    Object.values(node).forEach(closeObjects);
  }
  return node;
}

function loadContract() {
  if (!existsSync(SPEC)) {
    throw new Error(`${SPEC} is missing: set SBX_CH_OPENAPI to Cloud Hypervisor's OpenAPI file`);
  }
  const doc = YAML.parse(readFileSync(SPEC, 'utf8'));
  // strict: false lets OpenAPI's own keywords (deprecated, a default beside a $ref) pass unread.
  const ajv = new Ajv({ strict: false, allErrors: true });
  for (const [name, [lo, hi]] of Object.entries(INTEGER_FORMATS)) {
    ajv.addFormat(name, { type: 'number', validate: (n) => Number.isInteger(n) && n >= lo && n <= hi });
  }
  // One document holding every schema, so that '#/components/schemas/X' resolves inside it.
  ajv.addSchema({ $id: 'ch-openapi', components: { schemas: closeObjects(structuredClone(doc.components.schemas)) } });
  const schemaOf = (ref) => ajv.compile({ $ref: `ch-openapi${ref}` });
  const operation = (method, url) =>
    url.startsWith(`${API}/`) ? doc.paths[url.slice(API.length)]?.[method.toLowerCase()] : undefined;
  // The validator of a request's body, or null when the operation takes none.
  const bodyValidator = (method, url) => {
    const ref = operation(method, url)?.requestBody?.content?.['application/json']?.schema?.$ref;
    return ref ? schemaOf(ref) : null;
  };
  return { doc, operation, bodyValidator, schemaOf };
}

// ---- the fake Cloud Hypervisor ----

/*
 * Listens on `socketPath` and answers like Cloud Hypervisor's API: vmm.ping 200 with a
 * VmmPingResponse, vm.create 204 (400 for a body that does not fit VmConfig), vm.boot 204 (404
 * before vm.create, 400 with a body), unknown paths 404. Error bodies are JSON arrays of messages,
 * outermost first, as the real one sends. `fail` maps a path to { status, messages } to answer
 * instead. Every request is recorded in `requests` with its body as text and, for bodies that have a
 * schema, `errors` (null when valid).
 */
async function startFakeCh(contract, socketPath, { fail = {} } = {}) {
  const requests = [];
  let created = false;
  const reply = (res, status, messages) => {
    res.setHeader('Server', 'Cloud Hypervisor API');
    res.setHeader('Content-Type', 'application/json');
    res.writeHead(status);
    res.end(messages === undefined ? undefined : typeof messages === 'string' ? messages : JSON.stringify(messages));
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const rec = { method: req.method, url: req.url, headers: req.headers, body, errors: null, json: undefined };
      requests.push(rec);
      const validate = contract.bodyValidator(req.method, req.url);
      if (validate) {
        try {
          rec.json = JSON.parse(body);
          rec.errors = validate(rec.json) ? null : validate.errors;
        } catch (e) {
          rec.errors = [{ message: `not JSON: ${e.message}` }];
        }
      }
      if (fail[req.url]) {
        reply(res, fail[req.url].status, fail[req.url].messages);
        return;
      }
      const op = `${req.method} ${req.url}`;
      if (op === `GET ${API}/vmm.ping`) {
        reply(res, 200, { build_version: 'fake', version: 'fake', pid: FAKE_PID, features: [] });
      } else if (op === `PUT ${API}/vm.create`) {
        if (rec.errors) {
          reply(res, 400, ['Failed to deserialize JSON', JSON.stringify(rec.errors)]);
        } else {
          created = true;
          reply(res, 204);
        }
      } else if (op === `PUT ${API}/vm.boot`) {
        if (body.length) reply(res, 400, ['Bad Request']);
        else if (!created) reply(res, 404, ['Error from API', 'The VM is not created']);
        else reply(res, 204);
      } else {
        reply(res, 404, ['Not Found']);
      }
    });
  });
  server.listen(socketPath);
  await once(server, 'listening');
  return {
    requests,
    async stop() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

// ---- the C client ----

function requireProgram(path) {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    const rel = relative(REPO, path);
    throw new Error(`${path} is missing: build it first (make ${rel.startsWith('..') ? path : rel})`);
  }
}

// Runs ch-contract-client and parses what it printed.
async function runClient(socketPath, { net = true } = {}) {
  const args = ['--api-socket', socketPath, ...(net ? [] : ['--no-net'])];
  const r = await runToExit(CLIENT, args, { timeoutMs: 20000 });
  const out = { code: r.code, signal: r.signal, stderr: r.stderr, stdout: r.stdout, argv: [], spec: {}, other: [] };
  for (const line of r.stdout.trimEnd().split('\n')) {
    const [key, ...rest] = line.split(' ');
    const value = rest.join(' ');
    if (key === 'argv') out.argv.push(value);
    else if (key === 'channel') out.channel = { path: rest[0], port: Number(rest[1]) };
    else if (key === 'devices') out.devices = { base: rest[0], data: rest[1] };
    else if (key === 'spec') out.spec[rest[0]] = rest.slice(1).join(' ');
    else if (key === 'configure') out.configure = rest[0] === 'ok' ? 'ok' : { name: rest[1], message: rest.slice(2).join(' ') };
    else if (key === 'account') out.account = value;
    else if (key === 'done-calls') out.doneCalls = Number(value);
    else out.other.push(line);
  }
  return out;
}

const calls = (fake) => fake.requests.map((r) => `${r.method} ${r.url}`);

// What every request must be, whatever the case: an operation of the file, with a body only where the
// operation takes one, fitting its schema, and sent in a form the VMM's small HTTP server reads.
function assertWellFormed(contract, fake) {
  for (const r of fake.requests) {
    const what = `${r.method} ${r.url}`;
    assert.ok(contract.operation(r.method, r.url), `${what} is not an operation of the OpenAPI file`);
    assert.equal(r.headers['transfer-encoding'], undefined, `${what}: chunked bodies are not understood`);
    if (contract.bodyValidator(r.method, r.url)) {
      assert.equal(r.errors, null, `${what}: the body does not fit the schema: ${JSON.stringify(r.errors)}`);
      assert.equal(r.headers['content-type'], 'application/json', what);
      assert.equal(Number(r.headers['content-length']), Buffer.byteLength(r.body), what);
    } else {
      assert.equal(r.body, '', `${what} takes no body`);
      assert.ok([undefined, '0'].includes(r.headers['content-length']), what);
    }
  }
}

describe('Cloud Hypervisor driver against the OpenAPI file', () => {
  let contract;
  let dir;
  let fake;

  before(() => {
    requireProgram(CLIENT);
    contract = loadContract();
  });

  afterEach(async () => {
    await fake?.stop();
    fake = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const socketIn = () => {
    dir = mkdtempSync(join(tmpdir(), 'sbx-ch-'));
    return join(dir, 'api.sock');
  };

  // The checks of one successful boot, with or without a network.
  async function bootsAndDescribes(net) {
    const sock = socketIn();
    fake = await startFakeCh(contract, sock);
    const r = await runClient(sock, { net });
    assert.deepEqual([r.code, r.signal, r.stderr, r.other], [0, null, '', []], r.stdout);

    // Nothing but the binary and the API socket on the command line.
    assert.deepEqual(r.argv, ['/usr/local/bin/cloud-hypervisor', '--api-socket', `path=${sock}`]);
    assertWellFormed(contract, fake);
    assert.deepEqual(calls(fake), [`GET ${API}/vmm.ping`, `PUT ${API}/vm.create`, `PUT ${API}/vm.boot`]);
    assert.equal(r.configure, 'ok');
    assert.equal(r.doneCalls, 1);
    assert.equal(readFileSync(join(dir, 'vmm.pid'), 'utf8'), `${FAKE_PID}\n`);

    // The VmConfig says what the sandbox is.
    const c = fake.requests[1].json;
    assert.equal(c.payload.kernel, r.spec.kernel);
    assert.equal(c.payload.initramfs, r.spec.initramfs);
    assert.equal(c.payload.firmware, undefined);
    const cmdline = c.payload.cmdline.split(' ');
    assert.ok(cmdline.includes('console=ttyS0'), c.payload.cmdline);
    assert.ok(cmdline.includes(`sbx.channel=vsock:${r.channel.port}`), c.payload.cmdline);
    assert.deepEqual(c.cpus, { boot_vcpus: Number(r.spec.vcpus), max_vcpus: Number(r.spec.vcpus) });
    assert.deepEqual(c.memory, { size: Number(r.spec.memory_mb) * 1048576 });
    // The base image read-only, the data disk writable; the guest finds each by its serial.
    assert.deepEqual(
      c.disks.map((d) => [d.path, d.readonly, d.serial]),
      [
        [r.spec.rootfs, true, 'sbx-base'],
        [r.spec.data_disk, false, 'sbx-data'],
      ],
    );
    assert.deepEqual(r.devices, { base: 'serial:sbx-base', data: 'serial:sbx-data' });
    // The channel the agent connects to is the VMM's vsock socket, on the port the guest is told.
    assert.deepEqual(c.vsock, { cid: 3, socket: join(dir, 'vsock.sock') });
    assert.deepEqual(r.channel, { path: join(dir, 'vsock.sock'), port: 1024 });
    assert.deepEqual(c.serial, { mode: 'File', file: join(dir, 'console.log') });
    assert.deepEqual(c.console, { mode: 'Off' });
    assert.deepEqual(c.rng, { src: '/dev/urandom' });
    if (net) {
      assert.equal(c.net.length, 1);
      assert.equal(c.net[0].tap, r.spec.tap);
      assert.equal(c.net[0].mac, r.spec.mac);
      // Setting these on the tap would need CAP_NET_ADMIN, which the jailed VMM lacks.
      assert.deepEqual([c.net[0].host_mac, c.net[0].mtu, c.net[0].ip], [undefined, undefined, undefined]);
    } else {
      assert.equal(c.net, undefined);
    }
  }

  test('boots a sandbox with a network: ping, vm.create, vm.boot', () => bootsAndDescribes(true));

  test('boots a sandbox without a network', () => bootsAndDescribes(false));

  test('waits for the API socket when the VMM is slow to open it', async () => {
    const sock = socketIn();
    const run = runClient(sock);
    await sleep(300);
    fake = await startFakeCh(contract, sock);
    const r = await run;
    assert.deepEqual([r.code, r.configure, r.doneCalls], [0, 'ok', 1], r.stdout);
    assert.deepEqual(calls(fake), [`GET ${API}/vmm.ping`, `PUT ${API}/vm.create`, `PUT ${API}/vm.boot`]);
    assertWellFormed(contract, fake);
  });

  test('an error answer to vm.boot fails configure, with the answer kept', async () => {
    const sock = socketIn();
    fake = await startFakeCh(contract, sock, {
      fail: { [`${API}/vm.boot`]: { status: 500, messages: ['Error from API', 'Error booting VM', 'fake failure'] } },
    });
    const r = await runClient(sock);
    assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ''], r.stdout);
    assert.deepEqual(r.configure, { name: 'EIO', message: 'Input/output error' });
    assert.equal(r.account, `PUT ${API}/vm.boot: HTTP 500: Error from API: Error booting VM: fake failure`);
    assert.equal(r.doneCalls, 1);
    assert.deepEqual(calls(fake), [`GET ${API}/vmm.ping`, `PUT ${API}/vm.create`, `PUT ${API}/vm.boot`]);
    assertWellFormed(contract, fake);
  });

  test('a rejected vm.create fails configure and nothing is booted', async () => {
    const sock = socketIn();
    fake = await startFakeCh(contract, sock, {
      fail: { [`${API}/vm.create`]: { status: 400, messages: ['Failed to deserialize JSON', 'unknown field'] } },
    });
    const r = await runClient(sock, { net: false });
    assert.equal(r.code, 0, r.stdout);
    assert.equal(r.configure.name, 'EINVAL');
    assert.equal(r.account, `PUT ${API}/vm.create: HTTP 400: Failed to deserialize JSON: unknown field`);
    assert.equal(r.doneCalls, 1);
    assert.deepEqual(calls(fake), [`GET ${API}/vmm.ping`, `PUT ${API}/vm.create`]);
  });
});

// The validator must be able to say no, or the checks above prove nothing.
describe('the OpenAPI validator (negative controls)', () => {
  let validate;
  const good = () => ({
    payload: { kernel: '/k', initramfs: '/i', cmdline: 'console=ttyS0' },
    cpus: { boot_vcpus: 2, max_vcpus: 2 },
    memory: { size: 536870912 },
    disks: [{ path: '/r', readonly: true, image_type: 'Raw' }, { path: '/d' }],
    net: [{ tap: 't', mac: '02:00:00:00:00:01', num_queues: 2 }],
    vsock: { cid: 3, socket: '/v' },
    serial: { mode: 'File', file: '/c' },
    console: { mode: 'Off' },
    rng: { src: '/dev/urandom' },
  });

  before(() => {
    validate = loadContract().bodyValidator('PUT', `${API}/vm.create`);
  });

  test('a well-formed VmConfig passes', () => {
    assert.ok(validate(good()), JSON.stringify(validate.errors));
  });

  const rejects = (name, mutate) =>
    test(`rejects ${name}`, () => {
      const body = good();
      mutate(body);
      assert.equal(validate(body), false, `accepted ${JSON.stringify(body)}`);
    });

  rejects('a number sent as a string (cpus.boot_vcpus "2")', (b) => (b.cpus.boot_vcpus = '2'));
  rejects('a missing required field (payload)', (b) => delete b.payload);
  rejects('a field the file does not name (cpus.boot_vcpu)', (b) => (b.cpus.boot_vcpu = 2));
  rejects('a value outside an enum (console.mode "off")', (b) => (b.console.mode = 'off'));
  rejects('a value below a minimum (vsock.cid 2)', (b) => (b.vsock.cid = 2));
  rejects('an out-of-range integer format (disks[0].pci_device_id 256, uint8)', (b) => (b.disks[0].pci_device_id = 256));
});
