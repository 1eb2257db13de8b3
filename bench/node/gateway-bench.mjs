// SPDX-License-Identifier: Apache-2.0
//
// sh`true` through sbx-gateway against the same exec over gRPC straight to the sandbox's node.
//
//   node bench/node/gateway-bench.mjs [--rounds N] [--warmup N]
//
// Run by bench/gateway-bench on a dev cluster it starts (the environment of its env file). One
// sandbox serves both paths, alternately (ABBA rounds, so drift and other load spread over both):
//   gateway  the unmodified @deno/sandbox SDK (tests/sdk's pinned install): `await sandbox.sh\`true\``,
//            which is spawn (bash -c true, stdout and stderr piped), processWait and both stream ends
//   direct   @grpc/grpc-js on sbx.v1.SandboxData.Exec with the same command, environment and pipes,
//            from the start message to the exit status (the data address and access token come
//            from Sandboxes.Get, as the gateway gets them)
// Prints "# " context lines and one RESULT line: the median round trip of each path.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const top = path.resolve(here, "../..");
const { Sandbox } = await import(path.join(top, "tests/sdk/node_modules/@deno/sandbox/esm/mod.js"));

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const rounds = arg("--rounds", 60);
const warmup = arg("--warmup", 10);

const def = protoLoader.loadSync(["proto/sbx/v1/sandboxes.proto", "proto/sbx/v1/data.proto"], {
  includeDirs: [top],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const { Sandboxes, SandboxData } = grpc.loadPackageDefinition(def).sbx.v1;
const ca = fs.readFileSync(process.env.SBX_CA);
const bearer = (t) => {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${t}`);
  return md;
};

const sandbox = await Sandbox.create({ timeout: "10m" });
try {
  const sched = new Sandboxes(process.env.SBX_ENDPOINT, grpc.credentials.createSsl(ca), {
    "grpc.ssl_target_name_override": process.env.SBX_SERVER_NAME ?? "localhost",
  });
  const sb = await new Promise((resolve, reject) =>
    sched.Get({ id: sandbox.id, with_access_token: true }, bearer(process.env.SBX_TOKEN), (e, r) => (e ? reject(e) : resolve(r))));
  const data = new SandboxData(sb.data_address, grpc.credentials.createSsl(ca));
  const md = bearer(sb.access_token);

  const direct = () =>
    new Promise((resolve, reject) => {
      const call = data.Exec(md);
      let status = null;
      call.on("data", (m) => {
        if (m.exit) status = m.exit;
      });
      call.on("error", reject);
      call.on("end", () => (status && status.code === 0 ? resolve() : reject(new Error(`exit ${JSON.stringify(status)}`))));
      call.write({
        start: {
          sandbox_id: sandbox.id,
          command: "bash",
          args: ["-c", "true"],
          env: { BASH_ENV: "$HOME/.bashrc" },
          stdout: true,
          stderr: true,
        },
      });
    });
  const gateway = async () => {
    await sandbox.sh`true`;
  };
  const paths = { gateway, direct };
  const times = { gateway: [], direct: [] };
  const timed = async (name) => {
    const t0 = process.hrtime.bigint();
    await paths[name]();
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };

  for (let i = 0; i < warmup; i++) {
    await timed("gateway");
    await timed("direct");
  }
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 ? ["gateway", "direct", "direct", "gateway"] : ["direct", "gateway", "gateway", "direct"];
    for (const name of order) times[name].push(await timed(name));
  }
  const stats = (a) => {
    const s = [...a].sort((x, y) => x - y);
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return { median: q(0.5), p10: q(0.1), p90: q(0.9), mean: s.reduce((x, y) => x + y, 0) / s.length };
  };
  const g = stats(times.gateway), d = stats(times.direct);
  const f = (x) => x.toFixed(2);
  console.log(`# sandbox ${sandbox.id} on ${sb.node} (${sb.data_address}); ${rounds * 2} calls per path after ${warmup} warm-up`);
  console.log(`# gateway (SDK sh\`true\`): median ${f(g.median)} ms, p10 ${f(g.p10)}, p90 ${f(g.p90)}, mean ${f(g.mean)}`);
  console.log(`# direct (grpc-js Exec):  median ${f(d.median)} ms, p10 ${f(d.p10)}, p90 ${f(d.p90)}, mean ${f(d.mean)}`);
  console.log(`RESULT name=gateway.sh_true_rtt value=${f(g.median)} unit=ms baseline=${f(d.median)} target=<=1.2`);
  data.close();
  sched.close();
} finally {
  await sandbox.kill().catch(() => sandbox.close());
}
