// SPDX-License-Identifier: Apache-2.0
//
// @grpc/grpc-js as the client of our C server (build/tests/programs/echo-server): every call kind,
// error statuses with their messages, deadlines, metadata, an unknown method, and a clean exit.
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { relative, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';

import { freePort, loadEcho, runToExit, spawnListening } from './echo-js-server.mjs';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUILD = resolve(REPO, process.env.SBX_BUILD_DIR ?? 'build');
const ECHO_SERVER = resolve(BUILD, 'tests/programs/echo-server');
const ECHO_CLIENT = resolve(BUILD, 'tests/programs/echo-client');

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

// Resolves to { err, reply } of one Unary call.
function unary(client, request, { metadata = new grpc.Metadata(), deadlineMs } = {}) {
  const options = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
  return new Promise((done) => {
    client.Unary(request, metadata, options, (err, reply) => done({ err, reply }));
  });
}

// Resolves once a readable call ended and reported its status: { messages, error, status }.
function collect(call) {
  const messages = [];
  let error = null;
  call.on('data', (m) => messages.push(m));
  const ended = new Promise((done) => {
    call.on('end', done);
    call.on('error', (e) => {
      error = e;
      done();
    });
  });
  const status = new Promise((done) => call.on('status', done));
  return Promise.all([ended, status]).then(([, s]) => ({ messages, error, status: s }));
}

describe('grpc-js client against the C echo-server', () => {
  const { Echo, definition } = loadEcho();
  let server;
  let client;

  before(async () => {
    requireProgram(ECHO_SERVER);
    const port = await freePort();
    server = await spawnListening(ECHO_SERVER, ['--port', String(port)]);
    assert.equal(server.port, port, 'echo-server listens on the port it was given');
    client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    // Only reached with the server still up when a test failed before the shutdown test.
    await server?.stop('SIGKILL');
  });

  test('unary round trip', async () => {
    const payload = Buffer.from([0, 1, 2, 250, 255]);
    const { err, reply } = await unary(client, { text: 'hello', payload });
    assert.ifError(err);
    assert.deepEqual(reply, {
      text: 'hello',
      payload,
      index: 0,
      token: '',
      peer_identity: '',
      bytes: 0,
    });
  });

  test('unary with a 1 MiB reply', async () => {
    const { err, reply } = await unary(client, { reply_size: 1 << 20 });
    assert.ifError(err);
    assert.equal(reply.payload.length, 1 << 20);
    assert.ok(reply.payload.equals(Buffer.alloc(1 << 20)), 'the payload is zeros');
  });

  test('unary error status carries code and message', async () => {
    const request = { fail_status: grpc.status.FAILED_PRECONDITION, text: 'sandbox is not running' };
    const { err, reply } = await unary(client, request);
    assert.equal(reply, undefined);
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(err.details, 'sandbox is not running');
  });

  test('server stream delivers 100 replies in order', async () => {
    const { messages, error, status } = await collect(client.ServerStream({ text: 'tick', count: 100 }));
    assert.equal(error, null);
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(messages.map((m) => m.index), Array.from({ length: 100 }, (_, i) => i));
    assert.ok(messages.every((m) => m.text === 'tick'));
  });

  test('server stream error after its messages', async () => {
    const call = client.ServerStream({ count: 3, fail_status: grpc.status.ABORTED, text: 'stopped' });
    const { messages, error, status } = await collect(call);
    assert.deepEqual(messages.map((m) => m.index), [0, 1, 2]);
    assert.equal(error?.code, grpc.status.ABORTED);
    assert.equal(status.code, grpc.status.ABORTED);
    assert.equal(status.details, 'stopped');
  });

  test('client stream counts messages and bytes', async () => {
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer cs-token');
    const result = new Promise((done) => {
      const call = client.ClientStream(md, (err, reply) => done({ err, reply }));
      for (let i = 0; i < 20; i++) call.write({ payload: Buffer.alloc(1000, i) });
      call.end();
    });
    const { err, reply } = await result;
    assert.ifError(err);
    assert.equal(reply.text, 'done');
    assert.equal(reply.index, 20);
    assert.equal(reply.bytes, 20000);
    assert.equal(reply.token, 'cs-token');
  });

  test('bidi interleaved: each echo before the next request', async () => {
    const call = client.Bidi();
    const status = new Promise((done) => call.on('status', done));
    const replies = call[Symbol.asyncIterator]();
    for (let i = 0; i < 10; i++) {
      call.write({ text: `ping ${i}` });
      const { value, done } = await replies.next();
      assert.equal(done, false, `an echo for request ${i}`);
      assert.equal(value.text, `ping ${i}`);
      assert.equal(value.index, i);
    }
    call.end();
    assert.equal((await replies.next()).done, true);
    const s = await status;
    assert.equal(s.code, grpc.status.OK, s.details);
  });

  test('bidi sends `count` echoes per request', async () => {
    const call = client.Bidi();
    const all = collect(call);
    call.write({ text: 'a', count: 3 });
    call.write({ text: 'b' });
    call.end();
    const { messages, error, status } = await all;
    assert.equal(error, null);
    assert.equal(status.code, grpc.status.OK);
    assert.deepEqual(
      messages.map((m) => [m.text, m.index]),
      [
        ['a', 0],
        ['a', 0],
        ['a', 0],
        ['b', 1],
      ],
    );
  });

  test('a passed deadline is DEADLINE_EXCEEDED', async () => {
    const t0 = performance.now();
    const { err } = await unary(client, { delay_ms: 2000 }, { deadlineMs: 200 });
    const took = performance.now() - t0;
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(took >= 150 && took < 1500, `reported after ${Math.round(took)} ms`);
  });

  test('authorization metadata reaches the handler', async () => {
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer x');
    const { err, reply } = await unary(client, { text: 'who' }, { metadata: md });
    assert.ifError(err);
    assert.equal(reply.token, 'x');
  });

  test('an unknown method is UNIMPLEMENTED at once', async () => {
    const { requestSerialize, responseDeserialize } = definition['sbx.test.Echo'].Unary;
    const t0 = performance.now();
    const err = await new Promise((done) => {
      client.makeUnaryRequest(
        '/sbx.test.Echo/Nope',
        requestSerialize,
        responseDeserialize,
        { text: 'anyone?' },
        new grpc.Metadata(),
        { deadline: Date.now() + 30000 },
        (e) => done(e),
      );
    });
    const took = performance.now() - t0;
    assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /\/sbx\.test\.Echo\/Nope/);
    assert.ok(took < 2000, `answered after ${Math.round(took)} ms, not at once`);
  });

  test('the C echo-client passes against the C server too', async () => {
    requireProgram(ECHO_CLIENT);
    const r = await runToExit(ECHO_CLIENT, ['--target', `127.0.0.1:${server.port}`]);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ok unary',
      'ok server_stream',
      'ok client_stream',
      'ok bidi',
      'ok error_status',
      'ok deadline',
      'ok bearer_token',
    ]);
    assert.deepEqual([r.code, r.signal], [0, null]);
  });

  test('SIGTERM shuts the server down cleanly (exit 0, nothing on stderr)', async () => {
    client.close();
    const status = await server.stop('SIGTERM', 10000);
    assert.equal(server.stderr(), '');
    assert.deepEqual(status, { code: 0, signal: null });
  });
});
