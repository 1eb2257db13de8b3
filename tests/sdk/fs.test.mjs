// SPDX-License-Identifier: Apache-2.0
//
// sandbox.fs: every method, FsFile, upload and download of a directory tree, walk and expandGlob.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { cleanup, create } from "./lib/common.mjs";

const enc = new TextEncoder();
const dec = new TextDecoder();

function streamOf(...parts) {
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(typeof p === "string" ? enc.encode(p) : p);
      c.close();
    },
  });
}

async function collect(iter) {
  const out = [];
  for await (const e of iter) out.push(e);
  return out;
}

describe("sandbox.fs", () => {
  let sandbox, fsx, base;
  before(async () => {
    sandbox = await create();
    fsx = sandbox.fs;
    base = "/tmp/fs-test";
    await fsx.mkdir(base);
  });
  after(cleanup);

  test("writeFile / readFile with bytes, writeTextFile / readTextFile with text", async () => {
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    await fsx.writeFile(`${base}/bytes.bin`, bytes);
    assert.deepEqual(await fsx.readFile(`${base}/bytes.bin`), bytes);
    await fsx.writeTextFile(`${base}/text.txt`, "héllo wörld ✓");
    assert.equal(await fsx.readTextFile(`${base}/text.txt`), "héllo wörld ✓");
  });

  test("writeFile from a stream, append, createNew and create: false", async () => {
    await fsx.writeFile(`${base}/streamed.txt`, streamOf("one ", "two ", "three"));
    assert.equal(await fsx.readTextFile(`${base}/streamed.txt`), "one two three");
    await fsx.writeTextFile(`${base}/streamed.txt`, "!", { append: true });
    assert.equal(await fsx.readTextFile(`${base}/streamed.txt`), "one two three!");
    await assert.rejects(fsx.writeTextFile(`${base}/streamed.txt`, "x", { createNew: true }), (e) => e.constructor.name === "AlreadyExists" && e.code === "EEXIST");
    await assert.rejects(fsx.writeTextFile(`${base}/absent.txt`, "x", { create: false }), (e) => e.code === "ENOENT");
    await fsx.writeTextFile(`${base}/from-text-stream.txt`, new ReadableStream({ start(c) { c.enqueue("ab"); c.enqueue("cd"); c.close(); } }));
    assert.equal(await fsx.readTextFile(`${base}/from-text-stream.txt`), "abcd");
  });

  test("a larger file round-trips through a stream", async () => {
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) % 256);
    await fsx.writeFile(`${base}/big.bin`, streamOf(big.subarray(0, 1 << 20), big.subarray(1 << 20)));
    const back = await fsx.readFile(`${base}/big.bin`);
    assert.equal(back.length, big.length);
    assert.ok(Buffer.from(back).equals(Buffer.from(big)));
  });

  test("a missing file is NotFound with code ENOENT", async () => {
    await assert.rejects(fsx.readTextFile(`${base}/nope`), (e) => {
      // Rebuilt as Deno.errors.NotFound (the Node shim's class; its `name` stays "Error").
      assert.equal(e.constructor.name, "NotFound");
      assert.equal(e.code, "ENOENT");
      return true;
    });
  });

  test("mkdir, readDir, rename, remove", async () => {
    await fsx.mkdir(`${base}/d/e/f`, { recursive: true });
    await assert.rejects(fsx.mkdir(`${base}/d`), (e) => e.constructor.name === "AlreadyExists");
    await fsx.writeTextFile(`${base}/d/file`, "x");
    await fsx.symlink("file", `${base}/d/link`);
    const entries = (await collect(fsx.readDir(`${base}/d`))).sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(entries, [
      { name: "e", isFile: false, isDirectory: true, isSymlink: false },
      { name: "file", isFile: true, isDirectory: false, isSymlink: false },
      { name: "link", isFile: false, isDirectory: false, isSymlink: true },
    ]);
    await fsx.rename(`${base}/d/file`, `${base}/d/renamed`);
    assert.equal(await fsx.readTextFile(`${base}/d/renamed`), "x");
    await assert.rejects(fsx.remove(`${base}/d`), (e) => e.code === "ENOTEMPTY");
    await fsx.remove(`${base}/d`, { recursive: true });
    await assert.rejects(fsx.stat(`${base}/d`), (e) => e.code === "ENOENT");
  });

  test("stat and lstat give all 21 fields", async () => {
    await fsx.writeTextFile(`${base}/s.txt`, "12345");
    await fsx.symlink(`${base}/s.txt`, `${base}/s.link`);
    const st = await fsx.stat(`${base}/s.link`);
    const lst = await fsx.lstat(`${base}/s.link`);
    assert.equal(st.isFile, true);
    assert.equal(st.size, 5);
    assert.equal(lst.isSymlink, true);
    for (const k of ["isFile", "isDirectory", "isSymlink", "size", "mtime", "atime", "birthtime", "ctime", "mode", "dev", "ino",
      "nlink", "uid", "gid", "rdev", "blksize", "blocks", "isBlockDevice", "isCharDevice", "isFifo", "isSocket"]) {
      assert.notEqual(st[k], null, k);
      assert.notEqual(st[k], undefined, k);
    }
    assert.ok(st.mtime instanceof Date);
    assert.ok(Math.abs(st.mtime.getTime() - Date.now()) < 10 * 60 * 1000, "the guest's clock is set");
  });

  test("chmod, chown (null keeps), copyFile, link, readLink, realPath", async () => {
    await fsx.writeTextFile(`${base}/c.txt`, "copy me");
    await fsx.chmod(`${base}/c.txt`, 0o640);
    assert.equal((await fsx.stat(`${base}/c.txt`)).mode & 0o777, 0o640);
    const before = await fsx.stat(`${base}/c.txt`);
    await fsx.chown(`${base}/c.txt`, null, null);
    assert.equal((await fsx.stat(`${base}/c.txt`)).uid, before.uid);
    await fsx.copyFile(`${base}/c.txt`, `${base}/c2.txt`);
    assert.equal(await fsx.readTextFile(`${base}/c2.txt`), "copy me");
    await fsx.link(`${base}/c.txt`, `${base}/c.hard`);
    assert.equal((await fsx.stat(`${base}/c.txt`)).nlink, 2);
    await fsx.symlink("c.txt", `${base}/c.sym`);
    assert.equal(await fsx.readLink(`${base}/c.sym`), "c.txt");
    assert.equal(await fsx.realPath(`${base}/c.sym`), `${base}/c.txt`);
  });

  test("truncate, utime (milliseconds, as the SDK sends), umask", async () => {
    await fsx.writeTextFile(`${base}/t.txt`, "0123456789");
    await fsx.truncate(`${base}/t.txt`, 4);
    assert.equal(await fsx.readTextFile(`${base}/t.txt`), "0123");
    await fsx.truncate(`${base}/t.txt`);
    assert.equal((await fsx.stat(`${base}/t.txt`)).size, 0);
    const when = new Date("2020-02-29T12:34:56.789Z");
    await fsx.utime(`${base}/t.txt`, when, when);
    assert.equal((await fsx.stat(`${base}/t.txt`)).mtime.toISOString(), when.toISOString());
    const old = await fsx.umask(0o027);
    assert.equal(typeof old, "number");
    assert.equal(await fsx.umask(old), 0o027);
  });

  test("makeTempDir and makeTempFile", async () => {
    const d = await fsx.makeTempDir({ prefix: "pre-", suffix: "-suf" });
    assert.match(d, /^\/tmp\/pre-.*-suf$/);
    assert.equal((await fsx.stat(d)).isDirectory, true);
    const f = await fsx.makeTempFile({ dir: d });
    assert.ok(f.startsWith(d + "/"));
    assert.equal((await fsx.stat(f)).isFile, true);
  });

  test("FsFile: write, seek, read, stat, truncate, sync, utime, lock, close", async () => {
    const file = await fsx.create(`${base}/handle.txt`);
    assert.equal(await file.write(enc.encode("hello handle")), 12);
    assert.equal(await file.seek(6, 0), 6);
    const buf = new Uint8Array(32);
    const n = await file.read(buf);
    assert.equal(dec.decode(buf.subarray(0, n)), "handle");
    assert.equal(await file.read(buf), null);
    assert.equal(await file.seek(-6, 2), 6);
    assert.equal(await file.seek(1n, 1), 7);
    assert.equal((await file.stat()).size, 12);
    await file.truncate(5);
    assert.equal((await file.stat()).size, 5);
    await file.sync();
    await file.syncData();
    const when = new Date("2021-01-01T00:00:00.000Z");
    await file.utime(when, when);
    assert.equal((await file.stat()).mtime.toISOString(), when.toISOString());
    await file.lock(true);
    await file.unlock();
    file.close();
    file.close();
    assert.equal(await fsx.readTextFile(`${base}/handle.txt`), "hello");
  });

  test("FsFile: readable and writable streams, open options", async () => {
    const w = await fsx.open(`${base}/streams.txt`, { write: true, create: true, truncate: true });
    await streamOf("line 1\n", "line 2\n").pipeTo(w.writable);
    const r = await fsx.open(`${base}/streams.txt`);
    const text = await new Response(r.readable).text();
    assert.equal(text, "line 1\nline 2\n");
    await assert.rejects(fsx.open(`${base}/nope.txt`), (e) => e.constructor.name === "NotFound");
  });

  test("upload and download a directory tree", async () => {
    const local = await fs.mkdtemp(path.join(os.tmpdir(), "sbx-sdk-up-"));
    try {
      const tree = path.join(local, "tree");
      await fs.mkdir(path.join(tree, "sub", "deeper"), { recursive: true });
      await fs.writeFile(path.join(tree, "a.txt"), "A");
      await fs.writeFile(path.join(tree, "sub", "b.bin"), Buffer.from([1, 2, 3]));
      await fs.writeFile(path.join(tree, "sub", "deeper", "c.txt"), "C".repeat(100000));
      await fs.symlink("a.txt", path.join(tree, "to-a"));
      await fsx.mkdir(`${base}/uploaded`);
      await sandbox.fs.upload(tree, `${base}/uploaded`);
      assert.equal(await fsx.readTextFile(`${base}/uploaded/tree/a.txt`), "A");
      assert.deepEqual([...(await fsx.readFile(`${base}/uploaded/tree/sub/b.bin`))], [1, 2, 3]);
      assert.equal((await fsx.readTextFile(`${base}/uploaded/tree/sub/deeper/c.txt`)).length, 100000);
      assert.equal(await fsx.readLink(`${base}/uploaded/tree/to-a`), "a.txt");

      const down = path.join(local, "down");
      await fs.mkdir(down);
      await sandbox.fs.download(`${base}/uploaded/tree`, down);
      assert.equal(await fs.readFile(path.join(down, "tree", "a.txt"), "utf8"), "A");
      assert.deepEqual([...(await fs.readFile(path.join(down, "tree", "sub", "b.bin")))], [1, 2, 3]);
      assert.equal((await fs.readFile(path.join(down, "tree", "sub", "deeper", "c.txt"), "utf8")).length, 100000);
      assert.equal(await fs.readlink(path.join(down, "tree", "to-a")), "a.txt");
    } finally {
      await fs.rm(local, { recursive: true, force: true });
    }
  });

  describe("walk and expandGlob", () => {
    before(async () => {
      await fsx.mkdir(`${base}/w/src/lib`, { recursive: true });
      await fsx.mkdir(`${base}/w/node_modules/x`, { recursive: true });
      for (const f of ["w/README.md", "w/src/main.ts", "w/src/util.js", "w/src/lib/a.ts", "w/src/lib/b.md", "w/node_modules/x/i.ts"])
        await fsx.writeTextFile(`${base}/${f}`, f);
      await fsx.symlink("src", `${base}/w/src-link`);
    });

    test("walk lists the tree depth first, the root first", async () => {
      const entries = await collect(fsx.walk(`${base}/w`));
      const paths = entries.map((e) => e.path);
      assert.equal(paths[0], `${base}/w`);
      assert.equal(entries[0].name, "w");
      assert.deepEqual([...paths].sort(), [
        `${base}/w`, `${base}/w/README.md`, `${base}/w/node_modules`, `${base}/w/node_modules/x`, `${base}/w/node_modules/x/i.ts`,
        `${base}/w/src`, `${base}/w/src-link`, `${base}/w/src/lib`, `${base}/w/src/lib/a.ts`, `${base}/w/src/lib/b.md`,
        `${base}/w/src/main.ts`, `${base}/w/src/util.js`,
      ]);
      // A directory comes before what it holds.
      assert.ok(paths.indexOf(`${base}/w/src`) < paths.indexOf(`${base}/w/src/lib/a.ts`));
      const link = entries.find((e) => e.name === "src-link");
      assert.deepEqual(link, { path: `${base}/w/src-link`, name: "src-link", isFile: false, isDirectory: false, isSymlink: true });
    });

    test("walk honours maxDepth, includeDirs, exts, match and skip", async () => {
      const shallow = (await collect(fsx.walk(`${base}/w`, { maxDepth: 1 }))).map((e) => e.path).sort();
      assert.deepEqual(shallow, [`${base}/w`, `${base}/w/README.md`, `${base}/w/node_modules`, `${base}/w/src`, `${base}/w/src-link`]);
      const ts = (await collect(fsx.walk(`${base}/w`, { exts: ["ts"], includeDirs: false, skip: [/node_modules/] })))
        .map((e) => e.path).sort();
      assert.deepEqual(ts, [`${base}/w/src/lib/a.ts`, `${base}/w/src/main.ts`]);
      const md = (await collect(fsx.walk(`${base}/w`, { match: [/\.MD$/i], includeSymlinks: false }))).map((e) => e.name).sort();
      assert.deepEqual(md, ["README.md", "b.md"]);
    });

    test("walk of a missing root fails with NotFound", async () => {
      await assert.rejects(collect(fsx.walk(`${base}/no-such-dir`)), (e) => e.constructor.name === "NotFound");
    });

    test("expandGlob matches segments and globstars, sorted by path", async () => {
      const ts = (await collect(fsx.expandGlob(`${base}/w/**/*.ts`))).map((e) => e.path);
      assert.deepEqual(ts, [`${base}/w/node_modules/x/i.ts`, `${base}/w/src/lib/a.ts`, `${base}/w/src/main.ts`]);
      const excluded = (await collect(fsx.expandGlob("**/*.ts", { root: `${base}/w`, exclude: ["node_modules"] }))).map((e) => e.path);
      assert.deepEqual(excluded, [`${base}/w/src/lib/a.ts`, `${base}/w/src/main.ts`]);
      const braces = (await collect(fsx.expandGlob(`${base}/w/src/*.{ts,js}`))).map((e) => e.name);
      assert.deepEqual(braces, ["main.ts", "util.js"]);
      const dirsOnly = (await collect(fsx.expandGlob(`${base}/w/*/`))).map((e) => e.name);
      assert.deepEqual(dirsOnly, ["node_modules", "src"]);
      const noDirs = (await collect(fsx.expandGlob(`${base}/w/*`, { includeDirs: false }))).map((e) => e.name);
      assert.deepEqual(noDirs, ["README.md", "src-link"]);
      const entry = (await collect(fsx.expandGlob(`${base}/w/README.*`)))[0];
      assert.deepEqual(entry, { path: `${base}/w/README.md`, name: "README.md", isFile: true, isDirectory: false, isSymlink: false });
    });

    test("expandGlob of a relative glob starts at the working directory; nothing matches a missing root", async () => {
      await fsx.writeTextFile("/home/app/rel-glob.txt", "x");
      const rel = (await collect(fsx.expandGlob("rel-*.txt"))).map((e) => e.path);
      assert.deepEqual(rel, ["/home/app/rel-glob.txt"]);
      assert.deepEqual(await collect(fsx.expandGlob(`${base}/missing/*.ts`)), []);
    });
  });
});
