// SPDX-License-Identifier: Apache-2.0
//
// The @grpc/grpc-js side of the rpc benchmarks (docs/benchmarks.md): an sbx.test.Echo server with
// the semantics of tests/lib/echo-service.c, and a client making the same measurements as
// bench/rpc-bench.c with the same defaults and the same output.
//
//   node rpc-js.mjs server [--port N]          prints "listening on <port>"; SIGTERM stops it
//   node rpc-js.mjs client --target HOST:PORT --test unary|server-stream|client-stream
//                          [--calls N] [--warmup N] [--count K] [--size BYTES] [--seconds S]
//
// The client prints "# " context lines and one "RESULT test=<test> value=<number> unit=<unit>".

import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO = path.resolve(here, '../../tests/proto/sbx_test.proto');
// Producers stop queueing above this many bytes, as the C echo server's stream pump does.
const SEND_HIGH_WATER = 1024 * 1024;
const CALL_TIMEOUT_MS = 60_000;

function loadEcho() {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
  return grpc.loadPackageDefinition(def).sbx.test.Echo;
}

function parseArgs(argv) {
  const opts = { port: 0, target: null, test: null, calls: 2000, warmup: 200, count: 256, size: null, seconds: 2 };
  const numeric = new Set(['port', 'calls', 'warmup', 'count', 'size', 'seconds']);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (!(key in opts) || value === undefined) throw new Error(`bad argument ${argv[i]}`);
    opts[key] = numeric.has(key) ? Number(value) : value;
    if (numeric.has(key) && !Number.isInteger(opts[key])) throw new Error(`bad number for ${argv[i]}: ${value}`);
  }
  // Small payloads for round trips, 64 KiB messages for throughput (as rpc-bench.c).
  if (opts.size === null) opts.size = opts.test === 'unary' ? 64 : 64 * 1024;
  return opts;
}

// ---- server: the semantics of tests/lib/echo-service.c ----

function bearerToken(call) {
  const v = call.metadata.get('authorization')[0];
  return typeof v === 'string' && v.startsWith('Bearer ') ? v.slice(7) : '';
}

function makeReply(call, req, index, payloadCache) {
  let payload = req.payload;
  if (req.reply_size > 0) {
    if (!payloadCache.buf) payloadCache.buf = Buffer.alloc(req.reply_size);
    payload = payloadCache.buf;
  }
  return { text: req.text, payload, index, token: bearerToken(call), peer_identity: '' };
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const echoImpl = {
  async Unary(call, callback) {
    const req = call.request;
    if (req.delay_ms) await delay(req.delay_ms);
    if (req.fail_status) return callback({ code: req.fail_status, details: req.text });
    callback(null, makeReply(call, req, 0, {}));
  },

  async ServerStream(call) {
    const req = call.request;
    const cache = {};
    let cancelled = false;
    call.on('cancelled', () => {
      cancelled = true;
    });
    if (req.delay_ms) await delay(req.delay_ms);
    for (let i = 0; i < req.count && !cancelled; i++) {
      // write() returns false once the stream's buffer is full: wait for it to drain.
      if (!call.write(makeReply(call, req, i, cache))) await once(call, 'drain');
    }
    if (cancelled) return;
    if (req.fail_status) call.emit('error', { code: req.fail_status, details: req.text });
    else call.end();
  },

  ClientStream(call, callback) {
    let received = 0;
    let bytes = 0;
    let failed = false;
    call.on('data', (req) => {
      received++;
      bytes += req.payload.length;
      if (req.fail_status && !failed) {
        failed = true;
        callback({ code: req.fail_status, details: req.text });
      }
    });
    call.on('end', () => {
      if (!failed) callback(null, { text: 'done', index: received, bytes, token: bearerToken(call) });
    });
  },

  Bidi(call) {
    let received = 0;
    const cache = {};
    call.on('data', (req) => {
      if (req.fail_status) {
        call.emit('error', { code: req.fail_status, details: req.text });
      } else {
        const n = req.count || 1;
        for (let i = 0; i < n; i++) call.write(makeReply(call, req, received, cache));
      }
      received++;
    });
    call.on('end', () => call.end());
  },
};

async function runServer(opts) {
  const server = new grpc.Server();
  server.addService(loadEcho().service, echoImpl);
  const port = await new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  console.log(`listening on ${port}`);
  const stop = () => server.tryShutdown(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---- client ----

const now = () => process.hrtime.bigint();
const deadline = () => Date.now() + CALL_TIMEOUT_MS;

async function runUnary(client, opts) {
  const payload = Buffer.alloc(opts.size);
  const req = { text: 'ping', payload };
  const unary = () =>
    new Promise((resolve, reject) =>
      client.Unary(req, { deadline: deadline() }, (err, reply) => (err ? reject(err) : resolve(reply))),
    );
  const samples = new Float64Array(opts.calls);
  let total = 0;
  for (let i = 0; i < opts.warmup + opts.calls; i++) {
    const t0 = now();
    const reply = await unary();
    const dt = Number(now() - t0) / 1000;
    if (reply.payload.length !== opts.size) throw new Error('Unary reply carried the wrong payload');
    if (i >= opts.warmup) {
      samples[i - opts.warmup] = dt;
      total += dt;
    }
  }
  samples.sort();
  const median = Math.round(samples[Math.floor(opts.calls / 2)]);
  const p99 = Math.round(samples[Math.floor((opts.calls * 99) / 100)]);
  console.log(
    `# unary: ${opts.calls} calls after ${opts.warmup} warm-up, ${opts.size}-byte payload: median ${median} us, ` +
      `mean ${(total / opts.calls).toFixed(1)} us, p99 ${p99} us, min ${Math.round(samples[0])} us`,
  );
  console.log(`RESULT test=unary value=${median} unit=us`);
}

function serverStreamCall(client, opts) {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const call = client.ServerStream({ count: opts.count, reply_size: opts.size }, { deadline: deadline() });
    call.on('data', (reply) => {
      bytes += reply.payload.length;
    });
    call.on('error', reject);
    call.on('end', () => resolve(bytes));
  });
}

function clientStreamCall(client, opts, payload) {
  return new Promise((resolve, reject) => {
    const call = client.ClientStream({ deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply.bytes),
    );
    let sent = 0;
    const pump = () => {
      // Same bound as the C client: at most SEND_HIGH_WATER bytes queued.
      while (sent < opts.count) {
        sent++;
        const ok = call.write({ payload });
        if (!ok || call.writableLength * opts.size >= SEND_HIGH_WATER) {
          if (sent < opts.count) call.once('drain', pump);
          else call.end();
          return;
        }
      }
      call.end();
    };
    pump();
  });
}

async function runStream(client, opts) {
  const payload = Buffer.alloc(opts.size);
  const one = () =>
    opts.test === 'server-stream' ? serverStreamCall(client, opts) : clientStreamCall(client, opts, payload);
  const expected = opts.count * opts.size;
  const check = (bytes) => {
    if (bytes !== expected) throw new Error(`stream call moved ${bytes} payload bytes, expected ${expected}`);
  };

  check(await one()); // warm-up
  const start = now();
  let measured = 0;
  let calls = 0;
  let elapsed = 0;
  do {
    const bytes = await one();
    check(bytes);
    measured += bytes;
    calls++;
    elapsed = Number(now() - start) / 1e9;
  } while (elapsed < opts.seconds);
  const mbps = measured / 1e6 / elapsed;
  console.log(
    `# ${opts.test}: ${calls} calls of ${opts.count} x ${opts.size}-byte messages after 1 warm-up call: ` +
      `${(measured / 1e6).toFixed(1)} MB in ${elapsed.toFixed(2)} s = ${mbps.toFixed(1)} MB/s`,
  );
  console.log(`RESULT test=${opts.test} value=${mbps.toFixed(1)} unit=MB/s`);
}

async function runClient(opts) {
  if (!opts.target || !['unary', 'server-stream', 'client-stream'].includes(opts.test))
    throw new Error('client needs --target HOST:PORT --test unary|server-stream|client-stream');
  const Echo = loadEcho();
  const client = new Echo(opts.target, grpc.credentials.createInsecure());
  await new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
  );
  try {
    if (opts.test === 'unary') await runUnary(client, opts);
    else await runStream(client, opts);
  } finally {
    client.close();
  }
}

const [mode, ...rest] = process.argv.slice(2);
try {
  const opts = parseArgs(rest);
  if (mode === 'server') await runServer(opts);
  else if (mode === 'client') await runClient(opts);
  else throw new Error('usage: rpc-js.mjs server [--port N] | client --target HOST:PORT --test T [...]');
} catch (err) {
  console.error(`rpc-js: ${err.message}`);
  process.exit(1);
}
