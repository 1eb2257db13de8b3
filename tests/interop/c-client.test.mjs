// SPDX-License-Identifier: Apache-2.0
//
// Our C client (build/tests/programs/echo-client, on common/rpc) against a @grpc/grpc-js server
// implementing sbx.test.Echo (echo-js-server.mjs), and that server's command line.
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { relative, resolve } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';

import { freePort, loadEcho, runToExit, spawnListening, startEchoServer } from './echo-js-server.mjs';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUILD = resolve(REPO, process.env.SBX_BUILD_DIR ?? 'build');
const ECHO_CLIENT = resolve(BUILD, 'tests/programs/echo-client');
const JS_SERVER = fileURLToPath(new URL('./echo-js-server.mjs', import.meta.url));

// The checks echo-client runs, in order.
const CHECKS = ['unary', 'server_stream', 'client_stream', 'bidi', 'error_status', 'deadline', 'bearer_token'];

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

// Runs the C client against `port`: { code, signal, lines, stderr }.
async function runClient(port) {
  const r = await runToExit(ECHO_CLIENT, ['--target', `127.0.0.1:${port}`]);
  return { ...r, lines: r.stdout.trimEnd().split('\n') };
}

// Waits up to `ms` for `pred()` (server-side bookkeeping lags the client's view a little).
async function settle(pred, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(10);
}

describe('C echo-client against a grpc-js server', () => {
  let srv;

  before(() => requireProgram(ECHO_CLIENT));

  afterEach(async () => {
    await srv?.stop(100);
    srv = undefined;
  });

  test('every check passes', async () => {
    srv = await startEchoServer({ port: 0 });
    const r = await runClient(srv.port);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.lines, CHECKS.map((c) => `ok ${c}`));
    assert.deepEqual([r.code, r.signal], [0, null]);
    // One call per check; only the deadline call ends cancelled on the server.
    await settle(() => srv.stats.completed + srv.stats.cancelled === CHECKS.length);
    assert.deepEqual(srv.stats, { started: 7, completed: 6, cancelled: 1 });
  });

  test('a wrong answer makes the client fail (exit 1, a FAIL line)', async () => {
    // Unary answers with the wrong text and never fails or waits: four checks must notice.
    srv = await startEchoServer({
      handlers: {
        Unary(call, callback) {
          callback(null, { text: 'wrong' });
        },
      },
    });
    const r = await runClient(srv.port);
    assert.deepEqual([r.code, r.signal], [1, null]);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.lines, [
      'FAIL unary: text "wrong", expected "hello from C"',
      'ok server_stream',
      'ok client_stream',
      'ok bidi',
      'FAIL error_status: succeeded, expected NOT_FOUND',
      'FAIL deadline: succeeded, expected DEADLINE_EXCEEDED',
      'FAIL bearer_token: token "", expected "interop-token"',
    ]);
  });
});

describe('echo-js-server.mjs command line', () => {
  let proc;

  after(async () => {
    await proc?.stop('SIGKILL');
  });

  test('listens on --port, answers, exits 0 on SIGTERM', async () => {
    const port = await freePort();
    proc = await spawnListening(process.execPath, [JS_SERVER, '--port', String(port)]);
    assert.equal(proc.port, port);

    const { Echo } = loadEcho();
    const client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer cli');
    const { err, reply } = await new Promise((done) =>
      client.Unary({ text: 'hi', reply_size: 3 }, md, (e, rep) => done({ err: e, reply: rep })),
    );
    client.close();
    assert.ifError(err);
    assert.deepEqual(reply, {
      text: 'hi',
      payload: Buffer.alloc(3),
      index: 0,
      token: 'cli',
      peer_identity: '',
      bytes: 0,
    });

    const status = await proc.stop('SIGTERM', 5000);
    assert.equal(proc.stderr(), '');
    assert.deepEqual(status, { code: 0, signal: null });
  });
});
