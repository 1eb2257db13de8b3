// SPDX-License-Identifier: Apache-2.0
//
// The sbx.test.Echo service (tests/proto/sbx_test.proto) on @grpc/grpc-js, with the semantics of
// the C implementation in tests/lib/echo-service.c, so that our C client can be tested against a
// server that is not ours. Also usable on its own (benchmarks):
//
//   node tests/interop/echo-js-server.mjs --port N     prints "listening on <port>", exits 0 on SIGTERM
//
// Exports:
//   loadEcho()                        the Echo client constructor and the proto-loader definition
//   echoImplementation(stats)         the four handlers, for server.addService()
//   startEchoServer({ host, port })   an in-process server: { server, port, stats, stop() }; `handlers`
//                                     replaces some of the four (to test that clients notice)
//   freePort()                        a loopback TCP port that was free a moment ago
//   spawnTied(cmd, args)              spawns a program that dies with this process
//   spawnListening(cmd, args)         runs a program that prints "listening on <port>" (the C
//                                     echo-server or this file) and resolves once it did
//   runToExit(cmd, args)              runs a program to its end: exit status and output
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomInt } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

export const PROTO_PATH = fileURLToPath(new URL('../proto/sbx_test.proto', import.meta.url));

// Field names as in the .proto (delay_ms, fail_status), every field present in decoded messages,
// uint64 as Number (the counts in these tests stay far below 2^53).
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

export function loadEcho() {
  const definition = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(definition);
  return { Echo: pkg.sbx.test.Echo, definition };
}

export function newStats() {
  return { started: 0, completed: 0, cancelled: 0 };
}

// The token of "authorization: Bearer <token>", or ''.
function bearerToken(metadata) {
  const [value] = metadata.get('authorization');
  const s = typeof value === 'string' ? value : '';
  return s.startsWith('Bearer ') ? s.slice('Bearer '.length) : '';
}

function reply(call, req, index) {
  return {
    text: req.text,
    payload: req.reply_size > 0 ? Buffer.alloc(req.reply_size) : req.payload,
    index,
    token: bearerToken(call.metadata),
    // Plaintext only: there is no verified peer certificate to name.
    peer_identity: '',
    bytes: 0,
  };
}

function failure(req) {
  return { code: req.fail_status, details: req.text };
}

// Counts a call as started, then once as completed or cancelled; `onCancel` undoes pending work.
function track(call, stats, onCancel = () => {}) {
  let over = false;
  stats.started++;
  call.on('cancelled', () => {
    if (over) return;
    over = true;
    stats.cancelled++;
    onCancel();
  });
  return {
    get over() {
      return over;
    },
    complete() {
      if (over) return false;
      over = true;
      stats.completed++;
      return true;
    },
  };
}

export function echoImplementation(stats = newStats()) {
  return {
    Unary(call, callback) {
      const req = call.request;
      let timer;
      const t = track(call, stats, () => clearTimeout(timer));
      const answer = () => {
        if (!t.complete()) return;
        if (req.fail_status) callback(failure(req));
        else callback(null, reply(call, req, 0));
      };
      if (req.delay_ms > 0) timer = setTimeout(answer, req.delay_ms);
      else answer();
    },

    ServerStream(call) {
      const req = call.request;
      let timer;
      const t = track(call, stats, () => clearTimeout(timer));
      let sent = 0;
      // Writes until the stream pushes back, then resumes on 'drain'.
      const pump = () => {
        while (!t.over && sent < req.count) {
          const more = call.write(reply(call, req, sent++));
          if (!more && sent < req.count) {
            call.once('drain', pump);
            return;
          }
        }
        if (!t.complete()) return;
        if (req.fail_status) call.emit('error', failure(req));
        else call.end();
      };
      if (req.delay_ms > 0) timer = setTimeout(pump, req.delay_ms);
      else pump();
    },

    ClientStream(call, callback) {
      const t = track(call, stats);
      let received = 0;
      let bytes = 0;
      call.on('data', (req) => {
        received++;
        bytes += req.payload.length;
        if (req.fail_status && t.complete()) callback(failure(req));
      });
      call.on('end', () => {
        if (!t.complete()) return;
        callback(null, {
          text: 'done',
          payload: Buffer.alloc(0),
          index: received,
          token: bearerToken(call.metadata),
          peer_identity: '',
          bytes,
        });
      });
    },

    Bidi(call) {
      const t = track(call, stats);
      let received = 0;
      call.on('data', (req) => {
        if (t.over) return;
        if (req.fail_status) {
          t.complete();
          call.emit('error', failure(req));
          return;
        }
        const n = req.count || 1;
        for (let i = 0; i < n; i++) call.write(reply(call, req, received));
        received++;
      });
      call.on('end', () => {
        if (t.complete()) call.end();
      });
    },
  };
}

// Starts an in-process Echo server; port 0 picks a free one. stop() waits up to `graceMs` for
// running calls, then cancels them.
export async function startEchoServer(options = {}) {
  const { host = '127.0.0.1', port = 0, stats = newStats(), handlers = {} } = options;
  const { Echo } = loadEcho();
  const server = new grpc.Server();
  server.addService(Echo.service, { ...echoImplementation(stats), ...handlers });
  const bound = await new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const stop = (graceMs = 1000) =>
    new Promise((resolve) => {
      const force = setTimeout(() => server.forceShutdown(), graceMs);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  return { server, port: bound, stats, stop };
}

// Drawn below the kernel's ephemeral range: a port from inside it, free when asked, can become the
// source port of any outgoing connection before the daemon binds it (a scheduler's metrics port was
// once taken that way in check-ops, most likely by its own reconnects to an absent etcd). And drawn
// above 20000: the agent's own listeners have fixed default ports (10053, 10080, 10443).
function ephemeralLow() {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 32768;
  } catch {
    return 32768;
  }
}

async function tryListen(port) {
  const srv = net.createServer();
  const ok = await new Promise((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => resolve(true));
  });
  const bound = ok ? srv.address().port : 0;
  if (ok) {
    srv.close();
    await once(srv, 'close');
  }
  return bound;
}

export async function freePort() {
  const from = 20000;
  const low = ephemeralLow();
  for (let attempt = 0; low > from + 1000 && attempt < 200; attempt++) {
    const port = await tryListen(from + randomInt(low - from));
    if (port) return port;
  }
  // A machine whose ephemeral range leaves nothing below it: let the kernel choose.
  return tryListen(0);
}

// Children still running when this process exits are killed, so a failed test leaves nothing.
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

// Spawns `command` with stdout and stderr piped so that it dies with this process even when that
// is killed: setpriv sets PR_SET_PDEATHSIG and execs it (as tests/lib/fixture.c does).
export function spawnTied(command, args = [], options = {}) {
  const child = spawn('setpriv', ['--pdeathsig=KILL', '--', command, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

// Runs `command` to its end (SIGKILL after timeoutMs): { code, signal, stdout, stderr }.
export function runToExit(command, args = [], { timeoutMs = 30000, env = process.env } = {}) {
  return new Promise((done, fail) => {
    const child = spawnTied(command, args, { env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (s) => (stdout += s));
    child.stderr.on('data', (s) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

/*
 * Spawns `command` and resolves once it printed "listening on <port>" on stdout. Resolves to
 * { child, port, stderr(), stop(signal, timeoutMs) }; stop() sends `signal` (SIGTERM), SIGKILLs
 * after timeoutMs and resolves to { code, signal } of the exit. Rejects (after killing the child)
 * if it exits or stays silent for timeoutMs first.
 */
export async function spawnListening(command, args = [], { timeoutMs = 10000, env = process.env } = {}) {
  const child = spawnTied(command, args, { env });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => {
    stderr += s;
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const stop = async (signal = 'SIGTERM', stopTimeoutMs = 5000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
      const status = await exited;
      clearTimeout(timer);
      return status;
    }
    return exited;
  };

  const lines = createInterface({ input: child.stdout });
  let timer;
  try {
    const port = await new Promise((resolve, reject) => {
      const silent = () => `${command} did not print "listening on" within ${timeoutMs} ms; stderr: ${stderr}`;
      timer = setTimeout(() => reject(new Error(silent())), timeoutMs);
      child.on('error', reject);
      lines.on('line', (line) => {
        const m = /^listening on (\d+)$/.exec(line);
        if (m) resolve(Number(m[1]));
      });
      exited.then(({ code, signal }) => {
        reject(new Error(`${command} exited (code ${code}, signal ${signal}) before listening; stderr: ${stderr}`));
      });
    });
    return { child, port, stderr: () => stderr, stop };
  } catch (err) {
    await stop('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function main(argv) {
  let port = 0;
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--port' && /^\d+$/.test(value ?? '') && Number(value) < 65536) {
      port = Number(value);
      i++;
    } else {
      process.stderr.write('usage: echo-js-server.mjs --port N\n');
      process.exitCode = 2;
      return;
    }
  }
  const srv = await startEchoServer({ port });
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await srv.stop(1000);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.write(`listening on ${srv.port}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`echo-js-server: ${err.message}\n`);
    process.exitCode = 1;
  });
}
