// SPDX-License-Identifier: Apache-2.0
//
// The npm etcd3 side of the etcd benchmarks (docs/benchmarks.md): the same requests, keys, value
// size, concurrency, warm-up and window as bench/etcd-bench.c, with the etcd3 client in its
// default configuration.
//
//   node etcd3-bench.mjs --endpoint HOST:PORT --op put|txn --concurrency C [--seconds S]
//                        [--warmup-ms MS] [--prefix P] [--size BYTES]
//
//   put  client.put('<prefix>/<w>/put').value(<size> bytes)
//   txn  client.if('<prefix>/<w>/state', 'Mod', '==', rev)
//              .then(client.put('.../state').value(v), client.put('.../aux').value(v))
//              .else(client.get('.../state')).commit()
//
// Prints "# " context and "RESULT op=<op> concurrency=<C> value=<number> unit=ops/s".

import { Etcd3 } from 'etcd3';

function parseArgs(argv) {
  const opts = { endpoint: null, op: null, concurrency: 1, seconds: 3, 'warmup-ms': 500, size: 128, prefix: 'bench/js' };
  const numeric = new Set(['concurrency', 'seconds', 'warmup-ms', 'size']);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    const value = argv[i + 1];
    if (!(key in opts) || value === undefined) throw new Error(`bad argument ${argv[i]}`);
    opts[key] = numeric.has(key) ? Number(value) : value;
    if (numeric.has(key) && !Number.isInteger(opts[key])) throw new Error(`bad number for ${argv[i]}: ${value}`);
  }
  if (!opts.endpoint || !['put', 'txn'].includes(opts.op) || opts.concurrency < 1)
    throw new Error('usage: etcd3-bench.mjs --endpoint HOST:PORT --op put|txn --concurrency C [...]');
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const client = new Etcd3({ hosts: `http://${opts.endpoint}` });
  const value = Buffer.alloc(opts.size, 'v');
  let phase = 'warmup';
  let completed = 0;
  let conflicts = 0;

  const workers = Array.from({ length: opts.concurrency }, (_, i) => ({
    key: `${opts.prefix}/${i}/${opts.op === 'txn' ? 'state' : 'put'}`,
    auxKey: `${opts.prefix}/${i}/aux`,
    // The mod_revision the next Txn compares against (0: the key does not exist yet).
    revision: '0',
  }));

  const once = async (w) => {
    if (opts.op === 'put') {
      await client.put(w.key).value(value).exec();
      return;
    }
    const r = await client
      .if(w.key, 'Mod', '==', w.revision)
      .then(client.put(w.key).value(value), client.put(w.auxKey).value(value))
      .else(client.get(w.key))
      .commit();
    if (r.succeeded) {
      w.revision = r.header.revision;
    } else {
      // Someone else wrote the key (never in this benchmark): retry from what it holds.
      const kvs = r.responses[0]?.response_range?.kvs ?? [];
      w.revision = kvs.length ? kvs[0].mod_revision : '0';
      conflicts++;
    }
  };

  const loop = async (w) => {
    while (phase !== 'drain') {
      await once(w);
      if (phase === 'measure') completed++;
    }
  };

  let start = 0n;
  let end = 0n;
  const timer = setTimeout(() => {
    phase = 'measure';
    start = process.hrtime.bigint();
    setTimeout(() => {
      end = process.hrtime.bigint();
      phase = 'drain';
    }, opts.seconds * 1000);
  }, opts['warmup-ms']);

  try {
    await Promise.all(workers.map(loop));
  } finally {
    clearTimeout(timer);
    client.close();
  }
  const secs = Number(end - start) / 1e9;
  const rate = completed / secs;
  console.log(
    `# etcd3 ${opts.op} c${opts.concurrency}: ${completed} requests in ${secs.toFixed(2)} s after ` +
      `${opts['warmup-ms']} ms warm-up, ${opts.size}-byte values, ${conflicts} conflicts: ${rate.toFixed(0)} ops/s`,
  );
  console.log(`RESULT op=${opts.op} concurrency=${opts.concurrency} value=${rate.toFixed(0)} unit=ops/s`);
}

try {
  await main();
} catch (err) {
  console.error(`etcd3-bench: ${err.message}`);
  process.exit(1);
}
