/**
 * The reliability table of issue 9: for each kind of fault or mistake, how
 * many cases were tried, how many Rubicon handled as it must, and how many
 * it did not. A script, not a test: it prints the table and exits 1 when a
 * row has a failure (so CI's reduced run shows it), never on timing.
 *
 *   node bench/reliability.ts            the full table (≥ 1,000 runbooks, 6 SIGKILLs, …)
 *   node bench/reliability.ts --small    the reduced table CI runs (about two minutes)
 *   --seed N                             the seed (printed; the same seed tries the same cases)
 *
 * Rows, and what "handled" means in each:
 * - malformed runbooks (YAML text mutated, and schema-shaped values of the
 *   wrong kind): the loader refuses with exit 3 and a message naming the
 *   runbook file and a field or line, or the mutation left a valid runbook
 *   (counted apart, not as handled). A crash (a non-Rubicon error) or
 *   another exit code is a failure.
 * - single-bit flips in stored objects of the filesystem vault, plain and
 *   encrypted (objects, manifests, index entries): the vault names the
 *   damage (check() is not ok, or the index entry no longer verifies).
 *   The other vault kinds are covered by their suites' fixed cases
 *   (test/vaults/remote.test.ts, test/vaults/azure-blob.test.ts), not here.
 * - SIGKILL (real: RUBICON_FAULT=kill@…, the CLI in a child process) at
 *   seeded random journal checkpoints of an upgrade, then `resume --yes`:
 *   landed, every item validated, no artifact captured twice, one crossing.
 * - forged evidence on a refused run (a passing gate and permit appended
 *   unsigned, signed by another key, signed by the run's own stolen key; a
 *   record edited in place): `resume --yes` never starts a crossing.
 * - planted secrets and patient values (the run's private signing key, the
 *   sandbox database's patient names, a row a vendor tool prints): none in
 *   the journal, the event stream, the terminal or the reports (the tool's
 *   own log beside the run keeps its output by design: docs/inputs.md).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { exitCodeOf, isRubiconError } from '../src/core/errors.ts';
import type { JournalEvent, JournalRecord } from '../src/core/events.ts';
import { recordSigner } from '../src/run/audit.ts';
import { recordHash } from '../src/run/journal.ts';
import { loadRunbook } from '../src/runbook/load.ts';
import { buildSandbox } from '../src/sandbox/estate.ts';
import { defaultKeyDir } from '../src/trust/keyring.ts';
import { generateKeyPair, loadSigner, verifierFrom } from '../src/trust/keys.ts';
import { indexEntrySigned, signIndexEntry } from '../src/trust/index-entry.ts';
import { FilesystemVault } from '../src/vaults/filesystem.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const BIN = path.join(ROOT, 'bin/rubicon.js');
const args = process.argv.slice(2);
const small = args.includes('--small');
const seedArg = args.indexOf('--seed');
const seed = seedArg >= 0 ? Number(args[seedArg + 1]) : Date.now() % 1_000_000;

/** mulberry32: a small seeded generator, so a seed reproduces the cases. */
function rng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(seed);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const int = (n: number) => Math.floor(rand() * n);

interface Row {
  name: string;
  tried: number;
  handled: number;
  failed: number;
  note: string;
  examples: string[];
}
const rows: Row[] = [];
function row(name: string): Row {
  const r = { name, tried: 0, handled: 0, failed: 0, note: '', examples: [] as string[] };
  rows.push(r);
  return r;
}
function fail(r: Row, what: string): void {
  r.failed += 1;
  if (r.examples.length < 3) r.examples.push(what.slice(0, 200));
}

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...argv], { env: { ...process.env, ...env }, maxBuffer: 256 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code?: number | string; signal?: string; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : x.signal === 'SIGKILL' ? 137 : 1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}
const journalOf = async (stateDir: string, runId: string): Promise<JournalRecord[]> =>
  (await readFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalRecord);
const runIdOf = (stdout: string): string => (JSON.parse(stdout.split('\n').find((l) => l.includes('"run.started"'))!) as { event: { runId: string } }).event.runId;

const work = await mkdtemp(path.join(os.tmpdir(), 'rubicon-reliability-'));

// ------------------------------------------------------------ 1. runbooks
async function runbooks(): Promise<void> {
  const n = small ? 300 : 1200;
  const rText = row('malformed runbooks: YAML text mutated');
  const rShape = row('malformed runbooks: values of the wrong kind');
  const L = await buildSandbox(path.join(work, 'runbooks'), { patients: 20, documents: 4, messages: 2 });
  const base = await readFile(L.runbook, 'utf8');
  const doc = YAML.parse(base) as Record<string, unknown>;
  const file = path.join(path.dirname(L.runbook), 'mutated.yaml');
  const stillValid = new Map<Row, number>();
  const judge = async (r: Row, text: string, what: string) => {
    r.tried += 1;
    await writeFile(file, text);
    try {
      await loadRunbook(file);
      stillValid.set(r, (stillValid.get(r) ?? 0) + 1);
      r.tried -= 1; // not malformed after all: counted apart
    } catch (e) {
      if (!isRubiconError(e)) return fail(r, `${what}: crashed: ${String(e)}`);
      if (exitCodeOf(e) !== 3) return fail(r, `${what}: exit ${exitCodeOf(e)} (${e.code})`);
      const names = e.message.includes(file) || e.message.includes('mutated.yaml') || /\b(line|field|at) /.test(e.message) || /[a-zA-Z]+\.[a-zA-Z\[\]0-9.]+/.test(e.message);
      if (!names) return fail(r, `${what}: names no file or field: ${e.message}`);
      r.handled += 1;
    }
  };
  const lines = base.split('\n');
  const junk = ['', '~', 'null', '[', ']', '{', '}', ':', '- -', '&a [*a, *a]', '!!binary x', '"unterminated', "'x", '0x', '1e999', '-1', 'yes', '\u0000', '\uFEFF', 'é'.repeat(3), '\t'];
  for (let i = 0; i < n; i++) {
    const op = int(6);
    const ls = [...lines];
    const at = int(ls.length);
    if (op === 0) ls.splice(at, 1);
    else if (op === 1) ls.splice(at, 0, ls[int(ls.length)]!);
    else if (op === 2) ls[at] = ls[at]!.replace(/:\s.*$/, `: ${pick(junk)}`);
    else if (op === 3) ls[at] = `${' '.repeat(int(5))}${ls[at]!.trimStart()}`;
    else if (op === 4) ls[at] = ls[at]!.slice(0, int(ls[at]!.length + 1)) + pick(junk);
    else ls.splice(at);
    await judge(rText, ls.join('\n'), `text op ${op} at line ${at + 1}`);
  }
  // Schema-shaped: one value somewhere replaced by a value of another kind, or a key dropped or added.
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, p: (string | number)[]) => {
    if (p.length > 0) paths.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...p, i]));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
  };
  walk(doc, []);
  const wrong: unknown[] = [null, 0, -1, 1.5, 'x', '', [], {}, true, 'a'.repeat(5000), '2026-02-30', ['x'], { x: 1 }];
  for (let i = 0; i < n; i++) {
    const d = structuredClone(doc);
    const p = pick(paths);
    let parent = d as Record<string | number, unknown>;
    for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
    const last = p.at(-1)!;
    const op = int(3);
    if (op === 0) parent[last] = pick(wrong);
    else if (op === 1) {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (!Array.isArray(parent)) parent[`unknownField${int(9)}`] = pick(wrong);
    else parent[last] = pick(wrong);
    await judge(rShape, YAML.stringify(d), `${['wrong kind', 'dropped', 'added'][op]} at ${p.join('.')}`);
  }
  for (const r of [rText, rShape]) r.note = `${stillValid.get(r) ?? 0} mutations left a valid runbook (not counted)`;
}

// ------------------------------------------------------------ 2. bit flips
async function bitFlips(): Promise<void> {
  const per = small ? 20 : 100;
  const signer = loadSigner({ env: 'K' }, { K: generateKeyPair().privateKeyPem });
  const verifier = verifierFrom(signer.publicKeyPem);
  for (const sealed of [false, true]) {
    const r = row(`bit flips, filesystem vault${sealed ? ' (encrypted at rest)' : ''}: objects, manifests, index entries`);
    for (let i = 0; i < per; i++) {
      const root = path.join(work, `flip-${sealed ? 's' : 'p'}-${i}`);
      const info = { name: 'nas', kind: 'filesystem' as const, location: root, offTarget: true, immutable: false };
      const options = sealed ? { encryption: { key: randomBytes(32) } } : {};
      const v = new FilesystemVault(info, options as never);
      const data = randomBytes(1024 + int(200_000));
      const sha = await v.putBytes(data);
      const manifest = Buffer.from(JSON.stringify({ version: 1, entries: [{ path: 'a', size: data.length, sha256: sha }] }));
      const msha = await v.putBytes(manifest);
      const entry = signIndexEntry({ artifactId: `a${i}`, runId: 'r', itemId: 'folder:x', method: 'file-mirror', manifestHash: msha, capturedAt: new Date().toISOString() }, signer);
      await v.putArtifactIndex(entry);
      await v.sync();
      for (const kind of ['object', 'manifest', 'index'] as const) {
        r.tried += 1;
        const files = (await readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
        // Objects by size: the data (≥ 1 KiB) is the largest object file, the manifest the other (names are keyed when encrypted).
        const objs = await Promise.all(files.filter((f) => f.includes(`${path.sep}objects${path.sep}`)).map(async (f) => ({ f, size: (await readFile(f)).length })));
        objs.sort((x, y) => y.size - x.size);
        const target = kind === 'index' ? files.find((f) => f.includes(`${path.sep}index${path.sep}`))! : objs[kind === 'object' ? 0 : 1]!.f;
        const bytes = await readFile(target);
        const at = int(bytes.length);
        bytes[at]! ^= 1 << int(8);
        await writeFile(target, bytes);
        const fresh = new FilesystemVault(info, options as never);
        let named = false;
        if (kind === 'index') {
          const bad: string[] = [];
          const list = await fresh.listArtifacts({ onBad: (f) => bad.push(f) });
          named = bad.length > 0 || list.length === 0 || !indexEntrySigned(list[0]!, verifier) || JSON.stringify(stripLocal(list[0]!)) !== JSON.stringify(stripLocal(entry));
          // A flip in JSON whitespace or in the vault-local field changes nothing the artifact is named by: not damage.
          if (!named && list[0] && indexEntrySigned(list[0], verifier)) {
            r.tried -= 1;
          }
        } else {
          const c = await fresh.check(kind === 'object' ? sha : msha, kind === 'object' ? data.length : manifest.length);
          named = c.status !== 'ok';
        }
        if (kind !== 'index' || named) {
          if (named) r.handled += 1;
          else fail(r, `${kind} flip at byte ${at} not noticed`);
        }
      }
      await rm(root, { recursive: true, force: true });
    }
    r.note = 'flips in JSON whitespace of an index entry that leave it signed and equal are not damage (not counted)';
  }
}
function stripLocal(e: object): object {
  const { objectsVerifiedSince: _o, ...rest } = e as Record<string, unknown>;
  return rest;
}
// ------------------------------------------------------------ 3. SIGKILL
async function sigkills(): Promise<void> {
  const r = row('SIGKILL at seeded random checkpoints of an upgrade, then resume');
  const k = small ? 2 : 6;
  // One clean upgrade gives the checkpoints an upgrade passes (every journal append is one).
  const L0 = await buildSandbox(path.join(work, 'kill-ref'), { patients: 60, documents: 12, messages: 6 });
  const ref = await cli(['upgrade', '--runbook', L0.runbook, '--state-dir', L0.stateDir, '--yes', '--json']);
  if (ref.code !== 0) {
    fail(r, `the reference upgrade did not land (exit ${ref.code})`);
    return;
  }
  const events = (await journalOf(L0.stateDir, runIdOf(ref.stdout))).map((x) => x.event.type);
  const points = events.map((t, i) => `${t}#${events.slice(0, i + 1).filter((x) => x === t).length}`).filter((p) => !p.startsWith('run.completed') && !p.startsWith('run.started'));
  for (let i = 0; i < k; i++) {
    const point = pick(points);
    r.tried += 1;
    const L = await buildSandbox(path.join(work, `kill-${i}`), { patients: 60, documents: 12, messages: 6 });
    const died = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json'], { RUBICON_FAULT: `kill@${point}` });
    if (died.code !== 137) {
      fail(r, `${point}: the run did not die there (exit ${died.code})`);
      continue;
    }
    const runId = runIdOf(died.stdout);
    const resumed = await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    const j = (await journalOf(L.stateDir, runId)).map((x) => x.event);
    const ids = j.flatMap((e) => (e.type === 'artifact.captured' ? [e.artifact.id] : []));
    const items = j.flatMap((e) => (e.type === 'item.discovered' ? [e.item.id] : []));
    const validated = new Set(j.flatMap((e) => (e.type === 'landing.validated' && e.outcome === 'passed' ? [e.itemId] : [])));
    const problems = [
      resumed.code !== 0 ? `resume exit ${resumed.code}` : '',
      new Set(ids).size !== ids.length ? 'an artifact captured twice' : '',
      items.some((x) => !validated.has(x)) ? 'an item not landed' : '',
      j.filter((e) => e.type === 'crossing.completed').length !== 1 ? 'not exactly one crossing' : '',
    ].filter(Boolean);
    if (problems.length === 0) r.handled += 1;
    else fail(r, `${point}: ${problems.join(', ')}`);
    await rm(L.dir, { recursive: true, force: true });
  }
  r.note = `seed ${seed}; ${points.length} checkpoints in an upgrade`;
}

// ------------------------------------------------------------ 4. forged evidence
async function forgeries(): Promise<void> {
  const r = row('forged journal and permit on a refused run, then resume --yes');
  const L = await buildSandbox(path.join(work, 'forged'), { patients: 60, documents: 12, messages: 6 });
  const { open } = await import('node:fs/promises');
  const fh = await open(path.join(L.target, 'mssql/data/ehr.db'), 'r+');
  await fh.write(Buffer.alloc(8192, 0x5a), 0, 8192, 8 * 4096);
  await fh.close();
  const refused = await cli(['upgrade', '--runbook', L.runbook, '--state-dir', L.stateDir, '--yes', '--json']);
  if (refused.code !== 2) {
    fail(r, `the damaged estate was not refused (exit ${refused.code})`);
    return;
  }
  const runId = runIdOf(refused.stdout);
  const file = path.join(L.stateDir, 'runs', runId, 'journal.jsonl');
  const original = await readFile(file, 'utf8');
  const records = original.split('\n').filter(Boolean).map((l) => JSON.parse(l) as JournalRecord);
  const started = records[0]!.event as Extract<JournalEvent, { type: 'run.started' }>;
  const now = new Date();
  const pass: JournalEvent[] = [
    { type: 'run.resumed', pid: 1 },
    { type: 'gate.evaluated', result: { passed: true, evaluatedAt: now.toISOString(), results: [], reasons: [] } },
    {
      type: 'permit.issued',
      permit: { id: 'permit-forged', runId, target: started.target, image: 'x', proofIds: [], proofSetHash: 'f'.repeat(64), issuedAt: now.toISOString(), expiresAt: new Date(now.getTime() + 3600_000).toISOString() },
    },
  ];
  const stolen = loadSigner({ file: path.join(defaultKeyDir(), 'signing.pem') });
  const otherKey = loadSigner({ env: 'K' }, { K: generateKeyPair().privateKeyPem });
  const append = (sign?: (seq: number, hash: string) => string) => {
    let prev = records.at(-1)!.hash;
    let seq = records.at(-1)!.seq;
    let text = original;
    for (const event of pass) {
      seq += 1;
      const at = new Date().toISOString();
      const hash = recordHash(prev, seq, at, event);
      text += JSON.stringify({ seq, at, event, prev, hash, ...(sign ? { sig: sign(seq, hash) } : {}) }) + '\n';
      prev = hash;
    }
    return text;
  };
  const edited = () => {
    // The last gate.evaluated turned into a pass, chain recomputed from there, old signatures kept.
    const i = records.findLastIndex((x) => x.event.type === 'gate.evaluated');
    const out = records.slice(0, i);
    let prev = out.at(-1)!.hash;
    for (const x of records.slice(i)) {
      const event = x.seq === records[i]!.seq ? pass[1]! : x.event;
      const hash = recordHash(prev, x.seq, x.at, event);
      out.push({ ...x, event, prev, hash });
      prev = hash;
    }
    return out.map((x) => JSON.stringify(x)).join('\n') + '\n';
  };
  const variants: [string, string][] = [
    ['appended unsigned', append()],
    ['appended, signed by another key', append(recordSigner(otherKey))],
    ['appended, signed by the run\'s own (stolen) key', append(recordSigner(stolen))],
    ['the gate record edited in place', edited()],
  ];
  for (const [what, text] of variants) {
    r.tried += 1;
    await writeFile(file, text);
    await cli(['resume', runId, '--state-dir', L.stateDir, '--yes', '--json']);
    const after = await journalOf(L.stateDir, runId);
    if (after.some((x) => x.event.type === 'crossing.started')) fail(r, `${what}: the crossing started`);
    else r.handled += 1;
    await writeFile(file, original);
  }
  r.note = 'handled: no crossing.started';
}

// ------------------------------------------------------------ 5. planted secrets and patient values
async function planted(): Promise<void> {
  const r = row('planted secrets and patient values in logs, journal, events, reports');
  const L = await buildSandbox(path.join(work, 'planted'), { patients: 80, documents: 12, messages: 6 });
  const db = new DatabaseSync(path.join(L.target, 'mssql/data/ehr.db'), { readOnly: true });
  const values: string[] = [];
  for (const p of db.prepare('SELECT mrn, given_name, family_name, address FROM patients ORDER BY id LIMIT 8').all() as { mrn: string; given_name: string; family_name: string; address: string | null }[]) {
    values.push(p.mrn, `${p.given_name} ${p.family_name}`);
    if (p.address) values.push(p.address);
  }
  db.close();
  const ROW = `Planted Patient-${randomBytes(3).toString('hex')}|1970-01-01|MRN-${int(1e6)}`;
  const text = await readFile(L.runbook, 'utf8');
  await writeFile(L.runbook, text.replace(/command: \[node, ehr\/A\/bin\/sqlbackup\.ts[^\]]*\]/, `command: [sh, -c, "echo '${ROW}' >&2; echo 'SQLITE_CORRUPT: database disk image is malformed' >&2; exit 3"]`));
  const res = await cli(['rehearse', '--runbook', L.runbook, '--state-dir', L.stateDir, '--json']);
  // The run's private signing key (this user's key, src/trust/keyring.ts): not a byte of it anywhere.
  const key = await readFile(path.join(defaultKeyDir(), 'signing.pem'), 'utf8');
  const secretLine = key.split('\n').find((l) => l.length > 20 && !l.startsWith('-----'))!;
  let haystack = res.stdout + res.stderr;
  const runsDir = path.join(L.stateDir, 'runs');
  for (const e of existsSync(runsDir) ? await readdir(runsDir, { recursive: true, withFileTypes: true }) : []) {
    if (!e.isFile()) continue;
    const f = path.join(e.parentPath, e.name);
    // The tool's own log (by design), scratch copies, and the run's copy of the runbook (the planted command is the user's own input).
    if (f.includes(`${path.sep}logs${path.sep}`) || f.includes(`${path.sep}work${path.sep}`) || e.name === 'runbook.yaml') continue;
    haystack += await readFile(f, 'utf8').catch(() => '');
  }
  for (const [what, v] of [['the vendor tool\'s printed row', ROW], ['the signing key', secretLine], ...values.map((v, i) => [`patient value ${i + 1}`, v] as const)] as const) {
    r.tried += 1;
    if (haystack.includes(v)) fail(r, `${what} found`);
    else r.handled += 1;
  }
  r.note = `${values.length} patient values (MRN, name, address) read from the sandbox database; the rehearsal exited ${res.code}`;
}

const t0 = performance.now();
process.stdout.write(`rubicon reliability table (${small ? 'reduced' : 'full'}), seed ${seed}\n`);
await runbooks();
await bitFlips();
await forgeries();
await planted();
await sigkills();
await rm(work, { recursive: true, force: true });

const pad = (s: string | number, n: number) => String(s).padEnd(n);
process.stdout.write(`\n${pad('case', 80)} ${pad('tried', 6)} ${pad('handled', 8)} failed\n`);
for (const r of rows) {
  process.stdout.write(`${pad(r.name, 80)} ${pad(r.tried, 6)} ${pad(r.handled, 8)} ${r.failed}\n`);
  if (r.note) process.stdout.write(`  ${r.note}\n`);
  for (const x of r.examples) process.stdout.write(`  FAILED: ${x}\n`);
}
process.stdout.write(`\n${Math.round((performance.now() - t0) / 1000)} s; digest ${createHash('sha256').update(JSON.stringify(rows.map((r) => [r.name, r.tried, r.handled, r.failed]))).digest('hex').slice(0, 12)}\n`);
process.exit(rows.some((r) => r.failed > 0) ? 1 : 0);
