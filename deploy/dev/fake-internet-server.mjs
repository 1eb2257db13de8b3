// The fake internet's web servers (deploy/dev/fake-internet): HTTP on 80, 8080 and 8081, HTTPS on
// 443 and 8443, on every address of its namespace. Every response echoes what arrived: the address
// the client came from and the one it reached, the request line, every header as sent, and the body, so that a test (or a
// person trying the dev cluster) sees exactly what the egress proxy let through.
//
// Requests to /quiet get only "ok" back, so that a test can send a secret without it coming back
// into the sandbox; every request is also appended to REQUEST_LOG (one JSON object per line).
//
// An impatient host: on 198.51.100.30 (the literal address), a connection that sends nothing for a
// second is closed, as hosts close idle connections (the egress proxy must not hand the guest one
// that a host has given up on).
//
// Upgrade requests to /upgrade are switched (101) and then echo every byte back; other upgrade
// requests are answered 200 without switching, and whatever the client sends after them on that
// connection is logged as {"afterRefusedUpgrade": ...}: the egress proxy must not let it through
// unchecked (tests/integration/test-egress.c).
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
    const lines = [`from ${req.socket.remoteAddress} to ${req.socket.localAddress}`, `${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    lines.push('', Buffer.concat(chunks).toString('utf8'));
    if (requestLog) fs.appendFileSync(requestLog, JSON.stringify({ lines }) + '\n');
    const body = req.url.startsWith('/quiet') ? 'ok\n' : lines.join('\n');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

function upgrade(req, socket, head) {
  if (requestLog) fs.appendFileSync(requestLog, JSON.stringify({ lines: [`${req.method} ${req.url} (upgrade)`] }) + '\n');
  if (req.url.startsWith('/upgrade')) {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    if (head.length) socket.write(head);
    socket.on('data', (d) => socket.write(d));
  } else {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n');
    const after = (d) => {
      if (requestLog) fs.appendFileSync(requestLog, JSON.stringify({ afterRefusedUpgrade: d.toString('latin1') }) + '\n');
    };
    if (head.length) after(head);
    socket.on('data', after);
  }
  socket.on('error', () => {});
}

const tls = { cert: fs.readFileSync(cert), key: fs.readFileSync(key) };
const servers = [
  ...[80, 8080, 8081].map((port) => http.createServer(echo).listen(port, '0.0.0.0')),
  ...[443, 8443].map((port) => https.createServer(tls, echo).listen(port, '0.0.0.0')),
];
for (const s of servers) {
  s.on('upgrade', upgrade);
  s.on('connection', (socket) => {
    if (socket.localAddress === '198.51.100.30') socket.setTimeout(1000, () => socket.destroy());
  });
}
process.on('SIGTERM', () => process.exit(0));
