// The fake internet's web servers (deploy/dev/fake-internet): HTTP on 80, 8080 and 8081, HTTPS on
// 443 and 8443, on every address of its namespace. Every response echoes what arrived: the address
// the client came from, the request line, every header as sent, and the body, so that a test (or a
// person trying the dev cluster) sees exactly what the egress proxy let through.
//
// Requests to /quiet get only "ok" back, so that a test can send a secret without it coming back
// into the sandbox; every request is also appended to REQUEST_LOG (one JSON object per line).
//
//   node fake-internet-server.mjs CERT KEY REQUEST_LOG
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const [cert, key, requestLog] = process.argv.slice(2);

// GET /bytes/N: N zero bytes (at most 1 GiB), for throughput measurements (bench/egress-bench.c).
const zeros = Buffer.alloc(1 << 20);
function bytes(req, res, n) {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
  let left = n;
  const pump = () => {
    while (left > 0) {
      const k = Math.min(left, zeros.length);
      left -= k;
      if (!res.write(k === zeros.length ? zeros : zeros.subarray(0, k))) return res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

function echo(req, res) {
  const m = /^\/bytes\/(\d+)$/.exec(req.url);
  if (req.method === 'GET' && m && Number(m[1]) <= 1 << 30) return bytes(req, res, Number(m[1]));
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= 1 << 20) chunks.push(c);
  });
  req.on('end', () => {
    const lines = [`from ${req.socket.remoteAddress}`, `${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    lines.push('', Buffer.concat(chunks).toString('utf8'));
    if (requestLog) fs.appendFileSync(requestLog, JSON.stringify({ lines }) + '\n');
    const body = req.url.startsWith('/quiet') ? 'ok\n' : lines.join('\n');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

for (const port of [80, 8080, 8081]) http.createServer(echo).listen(port, '0.0.0.0');
const tls = { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
for (const port of [443, 8443]) https.createServer(tls, echo).listen(port, '0.0.0.0');
process.on('SIGTERM', () => process.exit(0));
