// SPDX-License-Identifier: Apache-2.0
//
// Checks that the PromQL in Prometheus rule files and Grafana dashboards uses only metrics that
// exist: names that the scraped /metrics pages export (a histogram `x` as x_bucket, x_sum and
// x_count only), or that a recording rule of the given rule files defines; and, inside `{...}`
// selectors of exported metrics, only label names those metrics carry (plus the target labels
// Prometheus adds).
//
// Which identifiers are checked: every name with a colon (a recording rule's output), and every
// name that starts with one of CHECKED_PREFIXES. Other identifiers are PromQL functions,
// keywords, label names, or Prometheus' own `up`.
//
// tests/ops/ops.test.mjs uses the functions below. As a program, for your own rules and
// dashboards:
//   node tests/ops/metric-names.mjs --exposition FILE [--exposition FILE]... \
//        [--target-labels a,b] FILE.yml|FILE.json...
// (FILE: a saved /metrics page; --target-labels: labels your scrape config adds) prints every
// unknown name and label with the file and expression using it, and exits 1 if there is one.
// Labels are checked only for families that have samples in the saved pages.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename } from 'node:path';

// The interop suite's npm project (tests/interop/node_modules, installed by `make deps`) has the
// YAML parser.
const require = createRequire(new URL('../interop/package.json', import.meta.url));
const YAML = require('yaml');

export const CHECKED_PREFIXES = ['sbx_', 'etcd_', 'grpc_'];

// Labels every scraped series gets from Prometheus itself.
export const PROMETHEUS_LABELS = ['job', 'instance'];

/*
 * Parses Prometheus text exposition. Returns { families: Map(name → { type, labels: Set, samples }),
 * names: Set of the names a query can use }. Label sets are the ones seen on samples (without
 * `le` and `quantile`): complete only for families that have samples.
 */
export function parseExposition(text) {
  const families = new Map();
  const family = (name) => {
    if (!families.has(name)) families.set(name, { type: 'untyped', labels: new Set(), samples: 0 });
    return families.get(name);
  };
  const lines = text.split('\n');
  for (const line of lines) {
    const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/.exec(line);
    if (m) family(m[1]).type = m[2];
  }
  const owner = (sample) => {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (!sample.endsWith(suffix)) continue;
      const base = sample.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base;
    }
    return sample;
  };
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const f = family(owner(m[1]));
    f.samples++;
    for (const [, label] of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) {
      if (label !== 'le' && label !== 'quantile') f.labels.add(label);
    }
  }
  const names = new Set();
  for (const [name, f] of families) {
    if (f.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    else if (f.type === 'summary') for (const s of ['', '_sum', '_count']) names.add(name + s);
    else names.add(name);
  }
  return { families, names };
}

/*
 * The label names each metric family is registered with in C sources (`sbx_metrics_counter(m,
 * "name", "help", SBX_LABEL_NAMES("a", "b"), ...)` or `NULL` for none): Map family → Set. A family
 * name may be a macro #defined to a string in the same file.
 */
export function sourceLabels(cFiles) {
  const out = new Map();
  for (const file of cFiles) {
    const text = readFileSync(file, 'utf8');
    const defines = new Map([...text.matchAll(/#define\s+([A-Z_][A-Z0-9_]*)\s+"([a-z0-9_]+)"/g)].map((m) => [m[1], m[2]]));
    const re = /sbx_metrics_(?:counter|gauge|histogram)\(\s*[\w>.-]+\s*,\s*(?:"([a-z0-9_]+)"|([A-Z_][A-Z0-9_]*))\s*,[\s\S]*?(?:SBX_LABEL_NAMES\(([^)]*)\)|NULL)\s*,/g;
    for (const m of text.matchAll(re)) {
      const name = m[1] ?? defines.get(m[2]);
      if (!name) continue;
      const labels = [...(m[3] ?? '').matchAll(/"([a-z_][a-z0-9_]*)"/g)].map((x) => x[1]);
      out.set(name, new Set(labels));
    }
  }
  return out;
}

// Removes string literals, so that label values (`method="/sbx.v1.Sandboxes/Create"`,
// `instance="host:9480"`) are never read as names.
function stripStrings(expr) {
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
}

/*
 * The metric names an expression uses: [{ name, labels: [label names of its {...} selector] }].
 * Only checked names (see above) are returned. Label names (in selectors, in by/without/on/
 * ignoring/group_left/group_right lists, and label_values()'s second argument) are never read as
 * metric names.
 */
export function metricRefs(expr) {
  const s = stripStrings(expr)
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '$1 ()')
    .replace(/(\blabel_values\s*\([^()]*?),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)/g, '$1)');
  // Selector blocks: [start, end) of every {...}, with the label names matched in it.
  const blocks = [];
  for (const m of s.matchAll(/\{([^}]*)\}/g)) {
    const labels = [...m[1].matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1]);
    blocks.push({ start: m.index, end: m.index + m[0].length, labels });
  }
  const refs = [];
  // Not preceded by a name character, `$` (Grafana variables), `.` or a digit (durations: 5m:1m).
  const re = /(?<![A-Za-z0-9_:$.])[A-Za-z_:][A-Za-z0-9_:]*/g;
  for (const m of s.matchAll(re)) {
    const name = m[0];
    if (blocks.some((b) => m.index > b.start && m.index < b.end)) continue;
    if (!name.includes(':') && !CHECKED_PREFIXES.some((p) => name.startsWith(p))) continue;
    const after = m.index + name.length;
    const ws = /^\s*/.exec(s.slice(after))[0].length;
    const block = blocks.find((b) => b.start === after + ws);
    refs.push({ name, labels: block ? block.labels : [] });
  }
  return refs;
}

// Expressions of a Prometheus rule file: [{ where, expr }], and the names it records.
export function ruleExpressions(text, file) {
  const doc = YAML.parse(text);
  const exprs = [];
  const records = new Set();
  for (const group of doc?.groups ?? []) {
    for (const rule of group.rules ?? []) {
      const what = rule.record ? `record ${rule.record}` : `alert ${rule.alert}`;
      exprs.push({ where: `${basename(file)}: ${group.name}: ${what}`, expr: String(rule.expr) });
      if (rule.record) records.add(rule.record);
    }
  }
  return { exprs, records };
}

// Expressions of a Grafana dashboard: every panel target's `expr` (rows and library panels
// included) and every template variable's query.
export function dashboardExpressions(text, file) {
  const doc = JSON.parse(text);
  const exprs = [];
  const visitPanels = (panels) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr === 'string') exprs.push({ where: `${basename(file)}: panel "${p.title}" ${t.refId}`, expr: t.expr });
      }
      visitPanels(p.panels);
    }
  };
  visitPanels(doc.panels);
  for (const v of doc.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (v.type === 'query' && q) exprs.push({ where: `${basename(file)}: variable $${v.name}`, expr: q });
  }
  return { exprs, records: new Set() };
}

export function fileExpressions(file) {
  const text = readFileSync(file, 'utf8');
  return file.endsWith('.json') ? dashboardExpressions(text, file) : ruleExpressions(text, file);
}

/*
 * Checks `files` (rule files and dashboards) against the exported `names`, the label names per
 * exported family (`labels`: Map family → Set; families missing from it are not label-checked)
 * and the labels every target gets (`targetLabels`). Recording rules defined in any of the rule
 * files count as known names. Returns a list of problems: { where, expr, problem }.
 */
export function check(files, { names, labels = new Map(), targetLabels = PROMETHEUS_LABELS }) {
  const all = files.map((f) => fileExpressions(f));
  const records = new Set(all.flatMap((x) => [...x.records]));
  const problems = [];
  for (const { exprs } of all) {
    for (const { where, expr } of exprs) {
      for (const { name, labels: used } of metricRefs(expr)) {
        if (records.has(name)) continue;
        if (!names.has(name)) {
          const hint = name.includes(':')
            ? 'no recording rule defines it'
            : names.has(`${name}_bucket`)
              ? `a histogram: query ${name}_bucket, _sum or _count`
              : 'no daemon exports it';
          problems.push({ where, expr, problem: `unknown metric ${name} (${hint})` });
          continue;
        }
        const family = name.replace(/_(bucket|sum|count)$/, '');
        const known = labels.get(labels.has(name) ? name : family);
        if (!known) continue;
        for (const l of used) {
          if (known.has(l) || targetLabels.includes(l) || (l === 'le' && name.endsWith('_bucket'))) continue;
          problems.push({ where, expr, problem: `${name} has no label "${l}" (it has: ${[...known].sort().join(', ') || 'none'})` });
        }
      }
    }
  }
  return problems;
}

export function formatProblems(problems) {
  return problems.map((p) => `${p.where}: ${p.problem}\n    in: ${p.expr.replace(/\s+/g, ' ').trim()}`).join('\n');
}

// ---- command line ----

function main(argv) {
  const expositions = [];
  const files = [];
  let targetLabels = PROMETHEUS_LABELS;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--exposition') expositions.push(argv[++i]);
    else if (argv[i] === '--target-labels') targetLabels = [...PROMETHEUS_LABELS, ...argv[++i].split(',')];
    else files.push(argv[i]);
  }
  if (expositions.length === 0 || files.length === 0) {
    console.error('usage: metric-names.mjs --exposition FILE... [--target-labels a,b] RULES.yml|DASHBOARD.json...');
    return 2;
  }
  const names = new Set();
  const labels = new Map();
  for (const e of expositions) {
    const x = parseExposition(readFileSync(e, 'utf8'));
    x.names.forEach((n) => names.add(n));
    // Label sets are known only for families with samples.
    for (const [n, f] of x.families) {
      if (f.samples > 0) labels.set(n, new Set([...(labels.get(n) ?? []), ...f.labels]));
    }
  }
  const problems = check(files, { names, labels, targetLabels });
  if (problems.length) {
    console.log(formatProblems(problems));
    return 1;
  }
  console.log(`metric-names: ${files.length} files use only exported metrics`);
  return 0;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) process.exit(main(process.argv.slice(2)));
