/**
 * Remote data-plane benchmark (issue 7 "Benchmark", issue 15's remote
 * line): Rubicon's remote methods through their real code path against the
 * same tools run by hand on the same hosts, on one generated tree on the
 * target host.
 *
 *   node bench/remote.ts [--small] [--rounds N] [--traces DIR]
 *
 * --traces keeps the ssh trace of every Rubicon contender (one file per
 * operation, RUBICON_TRACE_SSH's format) in DIR.
 *
 * Needs root and the test-host harness (test/hosts/: network namespaces,
 * sshd, restic, rsync, sha256sum). The default tree is ~1.06 GB in 20 004
 * files; --small is ~100 MB in 2 002 files (for CI). A script, not a test:
 * the numbers go into docs/data-plane.md ("Measured").
 *
 * Hosts: `target` (holds the tree; landing restores onto it) and `vault`
 * (an SFTP vault folder and restic repositories), on one namespaced segment
 * with the controller `ctl`, where Rubicon's side runs (a child process:
 * SshMachines, the step runner, the vaults, the grant pool, exactly the
 * objects a run uses). The by-hand side runs directly on the hosts
 * (`ip netns exec`): no orchestration at all.
 *
 * What each side does (same hosts, same tree, same ssh transport between
 * target and vault; neither side flushes the vault's disk, a run does not
 * either):
 * - restic capture. Rubicon: open the repository (`restic snapshots`, once
 *   per vault object in a run), a write grant (key pair, files on the
 *   target, authorized_keys line), `restic backup --json --files-from-raw`
 *   on the target as a journaled step, its summary checked against the
 *   manifest, the snapshot's full id, the manifest and index entry stored
 *   in the repository (one restic run), the grant revoked. By hand: `restic
 *   backup <dir>` on the target over sftp.
 * - restic copy check. Rubicon: checkCopy = `restic check --read-data` on
 *   the vault host + `restic ls --json` of the snapshot compared with the
 *   manifest + the manifest document's presence. By hand: `restic check
 *   --read-data` on the vault host. (Rubicon does more: the ls comparison.)
 * - rsync. Rubicon: the manifest built on the target (find + sha256sum of
 *   every file, one step), a write grant, rsync -a --files-from into
 *   trees/<name>.partial, rsync's --stats checked against the manifest,
 *   every file hashed on the vault host (one step) against the manifest,
 *   renamed into place, the manifest and index entry written to the vault
 *   (one call), the grant revoked. By hand: `find -type f -print0 | xargs -0
 *   sha256sum` on the target, `rsync -a` to the vault host, the sum file
 *   copied over with scp, `sha256sum -c --quiet` on the vault host. Same
 *   verification; Rubicon also lists the copy for extra files, compares
 *   counts, and keeps the partial copy out of place until it is verified.
 * - landing. Rubicon: a read grant, restoreTo (restic restore into a
 *   staging folder and one rename / rsync from the vault), every file
 *   hashed on the target against the manifest (verifyTreeOn, one step).
 *   By hand: `restic restore` / `rsync -a` back, then `sha256sum -c
 *   --quiet` (the ratio against the bare restore is printed too).
 * - restic's cache on the target is emptied before every restic contender
 *   (each backs up into a fresh copy of one template repository: same key
 *   and KDF cost, same repository id), so every backup is a first backup.
 *
 * Protocol: every contender writes into a fresh folder or repository, and
 * nothing is deleted until the end (ext4 here pays for recently deleted
 * inodes at the next allocation: see bench/capture.ts); interleaved rounds,
 * each round starting one contender later; min and median per contender,
 * ratios of both; a target is MET when best/best <= 1.10. The ssh calls of
 * every Rubicon contender are counted (RUBICON_TRACE_SSH): counts do not
 * depend on the load of this shared machine, times do.
 */
import { randomBytes, createHash } from 'node:crypto';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const HERE = fileURLToPath(import.meta.url);


// ------------------------------------------------------------------ the orchestrator's side (in ctl)

interface ChildConfig {
  net: import('../test/hosts/index.ts').TestNetInfo;
  runId: string;
  runDir: string;
  workDirs: Record<string, string>;
  passwordFile: string;
  traceDir: string;
}

async function child(config: ChildConfig): Promise<void> {
  const { SshMachine } = await import('../src/machines/ssh.ts');
  const { buildTreeManifest, verifyTreeOn } = await import('../src/machines/tree.ts');
  const { createStepRunner } = await import('../src/run/steps.ts');
  const { GrantPool } = await import('../src/run/grant-pool.ts');
  const { createResticVault } = await import('../src/vaults/restic.ts');
  const { createSftpVault } = await import('../src/vaults/sftp.ts');
  const { encodeManifest } = await import('../src/files/manifest.ts');
  type ToolVault = import('../src/vaults/vault.ts').ToolVault;
  type ManifestEntry = import('../src/core/types.ts').ManifestEntry;
  type RunState = import('../src/core/state.ts').RunState;

  const net = config.net;
  const machines = new Map<string, InstanceType<typeof SshMachine>>();
  const machine = (name: string) => {
    let m = machines.get(name);
    if (!m) {
      m = new SshMachine({
        name,
        host: name,
        port: 22,
        user: 'root',
        identityFile: net.clientKey.privateKeyPath,
        knownHostsFile: net.knownHostsPath,
        connectTimeoutSeconds: 5,
        stepsRoot: `${config.workDirs[name]}/steps/${config.runId}`,
        commandTimeoutSeconds: 3600,
      });
      machines.set(name, m);
    }
    return m;
  };
  const started = new Set<string>();
  const runner = createStepRunner(
    { record: (e) => void (e.type === 'step.started' && started.add(e.stepId)), completed: () => undefined, started: (id) => started.has(id) },
    config.runDir,
    config.runId,
  );
  const vaultHost = (() => {
    const h = net.hosts.find((x) => x.name === 'vault')!;
    return { kind: 'ssh' as const, host: 'vault', port: 22, user: 'root', identityFile: net.clientKey.privateKeyPath, knownHosts: net.knownHostsPath, connectTimeoutSeconds: 5, commandTimeoutSeconds: 3600, authorizedKeysFile: h.authorizedKeysPath };
  })();
  const deps = { vaultHost: machine('vault'), runId: config.runId, workDirOf: (m: { name: string }) => config.workDirs[m.name]! };
  const vaults = new Map<string, ToolVault>();
  const newVault = (key: string, kind: 'sftp' | 'restic', p: string): ToolVault => {
    const v =
      kind === 'sftp'
        ? createSftpVault({ name: key, kind: 'sftp', host: vaultHost, path: p }, deps)
        : createResticVault({ name: key, kind: 'restic', host: vaultHost, path: p, password: { file: config.passwordFile } }, deps);
    vaults.set(key, v);
    return v;
  };
  const pool = () =>
    new GrantPool({
      record: () => undefined,
      state: () => ({ grants: {} }) as unknown as RunState,
      now: () => new Date(),
      vaults: () => [...vaults.values()],
      machineNamed: (n) => machines.get(n),
    });
  const run = runner.run;
  let traceN = 0;
  /** Times `fn` and counts its ssh calls (RUBICON_TRACE_SSH, read by src/machines/ssh.ts at every call). */
  const measured = async <T>(fn: () => Promise<T>): Promise<{ ms: number; calls: number; value: T }> => {
    const file = path.join(config.traceDir, `trace-${++traceN}.tsv`);
    process.env.RUBICON_TRACE_SSH = file;
    const t = performance.now();
    try {
      const value = await fn();
      return { ms: performance.now() - t, calls: existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0, value };
    } finally {
      delete process.env.RUBICON_TRACE_SSH;
    }
  };
  const indexEntry = (artifactId: string, method: string, manifestHash: string) => ({
    artifactId, runId: config.runId, itemId: 'folder:tree', method, manifestHash, capturedAt: new Date().toISOString(), origin: 'rubicon' as const, independenceGroup: method,
  });

  const ops: Record<string, (a: any) => Promise<unknown>> = {
    async warm() {
      // A run's connections are up from discovery on: open them before anything is timed.
      for (const n of ['target', 'vault']) await machine(n).exec({ argv: ['true'] });
      return null;
    },
    async manifest(a: { dir: string; stepId: string }) {
      const r = await measured(() => buildTreeManifest(runner.onMachine, machine('target'), { id: a.stepId, idempotent: true }, a.dir));
      return { ms: r.ms, calls: r.calls, entries: r.value.entries };
    },
    async resticCapture(a: { key: string; repo: string; artifactId: string; srcDir: string; entries: ManifestEntry[] }) {
      const bytes = encodeManifest({ version: 1, artifactId: a.artifactId, itemId: 'folder:tree', method: 'restic', entries: a.entries });
      const manifestHash = createHash('sha256').update(bytes).digest('hex');
      const r = await measured(async () => {
        const v = newVault(a.key, 'restic', a.repo) as ToolVault & { ensureInitialized(): Promise<string> };
        await v.ensureInitialized();
        const p = pool();
        const g = await p.acquire(v, machine('target'), 'write');
        const got = await v.ingest(run, machine('target'), g, { artifactId: a.artifactId, stepId: `${a.artifactId}/ingest`, srcDir: a.srcDir, files: a.entries.map((e) => e.path), entries: a.entries });
        await v.putArtifactDocuments!(bytes, indexEntry(a.artifactId, 'restic', manifestHash));
        await p.close();
        return got.locator;
      });
      return { ms: r.ms, calls: r.calls, locator: r.value, manifestHash };
    },
    async resticCheck(a: { key: string; artifactId: string; locator: string; srcDir: string; entries: ManifestEntry[]; manifestHash: string }) {
      const r = await measured(() => vaults.get(a.key)!.checkCopy(run, { artifactId: a.artifactId, locator: a.locator, entries: a.entries, stepId: `${a.artifactId}/check`, srcDir: a.srcDir, manifestHash: a.manifestHash }));
      return { ms: r.ms, calls: r.calls, check: r.value };
    },
    async rsyncCapture(a: { key: string; root: string; artifactId: string; srcDir: string }) {
      let manifestMs = 0;
      let entries: ManifestEntry[] = [];
      let manifestHash = '';
      const r = await measured(async () => {
        const t = performance.now();
        entries = (await buildTreeManifest(runner.onMachine, machine('target'), { id: `${a.artifactId}/manifest`, idempotent: true }, a.srcDir)).entries;
        manifestMs = performance.now() - t;
        const bytes = encodeManifest({ version: 1, artifactId: a.artifactId, itemId: 'folder:tree', method: 'rsync', entries });
        manifestHash = createHash('sha256').update(bytes).digest('hex');
        const v = newVault(a.key, 'sftp', a.root);
        const p = pool();
        const g = await p.acquire(v, machine('target'), 'write');
        const got = await v.ingest(run, machine('target'), g, { artifactId: a.artifactId, stepId: `${a.artifactId}/ingest`, srcDir: a.srcDir, files: entries.map((e) => e.path), entries });
        await v.putArtifactDocuments!(bytes, indexEntry(a.artifactId, 'rsync', manifestHash));
        await p.close();
        return got.locator;
      });
      return { ms: r.ms, calls: r.calls, manifestMs, locator: r.value, manifestHash, files: entries.length };
    },
    async land(a: { key: string; kind: 'sftp' | 'restic'; path: string; artifactId: string; locator: string; srcDir: string; dest: string; entries: ManifestEntry[] }) {
      let restoreMs = 0;
      let ok = false;
      const r = await measured(async () => {
        // A landing is another process: a new vault object, its own grant.
        const v = newVault(`${a.key}-land`, a.kind, a.path);
        const p = pool();
        const t = performance.now();
        const g = await p.acquire(v, machine('target'), 'read');
        await v.restoreTo(run, machine('target'), g, { artifactId: a.artifactId, locator: a.locator, dest: a.dest, stepId: `${a.artifactId}/land`, srcDir: a.srcDir });
        restoreMs = performance.now() - t;
        const check = await verifyTreeOn(runner.onMachine, machine('target'), { id: `${a.artifactId}/land-verify`, idempotent: true }, a.dest, a.entries);
        ok = check.ok;
        await p.close();
      });
      return { ms: r.ms, calls: r.calls, restoreMs, ok };
    },
  };

  const rl = createInterface({ input: process.stdin });
  let pending = Promise.resolve();
  rl.on('line', (line) => {
    pending = pending.then(async () => {
      const req = JSON.parse(line) as { id: number; op: string; args: unknown };
      let answer: unknown;
      try {
        answer = { id: req.id, ok: true, value: (await ops[req.op]!(req.args)) ?? null };
      } catch (e) {
        answer = { id: req.id, ok: false, error: e instanceof Error ? `${(e as { code?: string }).code ?? ''} ${e.message}` : String(e) };
      }
      process.stdout.write(`${JSON.stringify(answer)}\n`);
    });
  });
  await new Promise<void>((resolve) => rl.on('close', () => void pending.then(resolve)));
  for (const m of machines.values()) await m.close();
}

// ------------------------------------------------------------------ main: hosts, tree, rounds, table

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const small = args.includes('--small');
  const rounds = Number(args[args.indexOf('--rounds') + 1]) || (small ? 5 : 3);
  const { createTestNet, CTL } = await import('../test/hosts/index.ts');
  const shape = small ? { dirs: 40, perDir: 50, avg: 25 * 1024, big: 2, bigSize: 25 * 1024 * 1024 } : { dirs: 200, perDir: 100, avg: 40 * 1024, big: 4, bigSize: 64 * 1024 * 1024 };

  const net = await createTestNet({ hosts: { target: {}, vault: {} }, segments: { a: [CTL, 'target', 'vault'] } });
  const local = mkdtempSync(path.join(tmpdir(), 'rubicon-bench-remote-'));
  try {
    const t = net.hosts.target;
    const v = net.hosts.vault;
    // ---- the tree, on the target host
    const tree = path.join(t.dataDir, 'tree');
    let files = 0;
    let bytes = 0;
    for (let d = 0; d < shape.dirs; d++) {
      const dir = path.join(tree, `d${String(d).padStart(3, '0')}`);
      mkdirSync(dir, { recursive: true });
      for (let f = 0; f < shape.perDir; f++) {
        // Sizes from 0 to 2x the average; random (incompressible) content.
        const size = Math.floor(((f * 7919 + d * 104729) % 1000) / 1000 * 2 * shape.avg);
        writeFileSync(path.join(dir, `f${String(f).padStart(3, '0')}.bin`), randomBytes(size));
        files++;
        bytes += size;
      }
    }
    for (let b = 0; b < shape.big; b++) {
      const file = path.join(tree, `big-${b}.bin`);
      writeFileSync(file, '');
      for (let off = 0; off < shape.bigSize; off += 8 * 1024 * 1024) appendFileSync(file, randomBytes(Math.min(8 * 1024 * 1024, shape.bigSize - off)));
      files++;
      bytes += shape.bigSize;
    }
    log(`tree: ${files} files, ${(bytes / 1e9).toFixed(2)} GB on ${t.name} (${tree})`);

    // ---- secrets and by-hand settings
    const passwordFile = path.join(local, 'restic.pass');
    writeFileSync(passwordFile, `${randomBytes(18).toString('base64')}\n`, { mode: 0o600 });
    // The same ssh client, key and options for every by-hand tool (no connection reuse: Rubicon's grants have none either).
    const sshToVault = net.sshArgv('vault').slice(0, -1).join(' ');
    const resticEnv = { RESTIC_PASSWORD_FILE: passwordFile };
    const sftpCmd = `${sshToVault} -s root@vault sftp`;
    const template = path.join(v.dataDir, 'restic-template');
    await net.exec('vault', ['restic', 'init', '-r', template], { env: resticEnv, timeoutMs: 120_000 });
    const sh = async (host: 'target' | 'vault', script: string, ...rest: string[]) => {
      const r = await net.exec(host, ['sh', '-c', script, 'bench', ...rest], { env: resticEnv, timeoutMs: 3 * 3600_000, reject: false });
      if (r.exitCode !== 0) throw new Error(`${host}: ${script.slice(0, 80)} exited ${r.exitCode}: ${r.stderr.slice(-2000)}`);
      return r;
    };
    const timedSh = async (host: 'target' | 'vault', script: string, ...rest: string[]) => {
      const t0 = performance.now();
      await sh(host, script, ...rest);
      return performance.now() - t0;
    };
    const emptyResticCache = () => sh('target', 'rm -rf -- "$HOME/.cache/restic"');
    const cloneRepo = async (to: string) => sh('vault', 'cp -a -- "$1" "$2"', template, to);

    // ---- Rubicon's side
    const traceDir = path.join(local, 'traces');
    mkdirSync(traceDir);
    const workDirs = { target: path.join(t.dataDir, 'rubicon'), vault: path.join(v.dataDir, 'rubicon') };
    const config: ChildConfig = { net: net.info(), runId: 'r-bench-remote', runDir: path.join(local, 'run'), workDirs, passwordFile, traceDir };
    const proc = net.node('ctl', [HERE, '--child', JSON.stringify(config)], { keepStdinOpen: true });
    let buf = '';
    const waiting = new Map<number, (x: { ok: boolean; value?: any; error?: string }) => void>();
    proc.stdout!.on('data', (d: Buffer) => {
      buf += String(d);
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        const a = JSON.parse(line) as { id: number; ok: boolean; value?: unknown; error?: string };
        waiting.get(a.id)?.(a);
      }
    });
    let next = 1;
    const call = <T = any>(op: string, a: unknown): Promise<T> =>
      new Promise((resolve, reject) => {
        const id = next++;
        waiting.set(id, (x) => (x.ok ? resolve(x.value as T) : reject(new Error(`${op}: ${x.error}`))));
        proc.stdin!.write(`${JSON.stringify({ id, op, args: a })}\n`);
      });
    await call('warm', {});
    const m0 = await call<{ entries: { path: string }[]; ms: number; calls: number }>('manifest', { dir: tree, stepId: 'manifest-0' });
    log(`manifest on the target (untimed setup): ${m0.entries.length} files in ${fmt(m0.ms)}, ${m0.calls} ssh call(s)`);
    const entries = m0.entries;
    const sums = path.join(t.dataDir, 'tree.sha256');

    type Sample = { ms: number; calls?: number; extra?: Record<string, number> };
    const S: Record<string, Sample[]> = {};
    const add = (k: string, s: Sample) => (S[k] ??= []).push(s);
    const outputs: { host: 'target' | 'vault'; path: string }[] = [];

    for (let r = 0; r < rounds; r++) {
      const tag = `r${r}`;
      const rubRepo = path.join(v.dataDir, `restic-rub-${tag}`);
      const rawRepo = path.join(v.dataDir, `restic-raw-${tag}`);
      const rubSftp = path.join(v.dataDir, `sftp-rub-${tag}`);
      const rawDest = path.join(v.dataDir, `rsync-raw-${tag}`);
      outputs.push({ host: 'vault', path: rubRepo }, { host: 'vault', path: rawRepo }, { host: 'vault', path: rubSftp }, { host: 'vault', path: rawDest });
      await cloneRepo(rubRepo);
      await cloneRepo(rawRepo);
      const captured: { restic?: { locator: string; manifestHash: string }; rsync?: { locator: string } } = {};
      const capture: [string, () => Promise<void>][] = [
        ['rubicon restic', async () => {
          await emptyResticCache();
          const c = await call('resticCapture', { key: `offsite-${tag}`, repo: rubRepo, artifactId: `bench.${tag}.restic`, srcDir: tree, entries });
          add('rubicon restic capture', { ms: c.ms, calls: c.calls });
          const k = await call('resticCheck', { key: `offsite-${tag}`, artifactId: `bench.${tag}.restic`, locator: c.locator, srcDir: tree, entries, manifestHash: c.manifestHash });
          if (k.check.status !== 'ok') throw new Error(`Rubicon's check of round ${r}: ${JSON.stringify(k.check)}`);
          add('rubicon restic check', { ms: k.ms, calls: k.calls });
          captured.restic = c;
        }],
        ['raw restic', async () => {
          await emptyResticCache();
          add('raw restic backup', { ms: await timedSh('target', 'restic -q -r "sftp:root@vault:$1" -o "sftp.command=$2" backup "$3" > /dev/null', rawRepo, sftpCmd, tree) });
          add('raw restic check', { ms: await timedSh('vault', 'restic -q -r "$1" check --read-data > /dev/null', rawRepo) });
        }],
        ['rubicon rsync', async () => {
          const c = await call('rsyncCapture', { key: `nas-${tag}`, root: rubSftp, artifactId: `bench.${tag}.rsync`, srcDir: tree });
          add('rubicon rsync', { ms: c.ms, calls: c.calls, extra: { manifestMs: c.manifestMs } });
          captured.rsync = c;
        }],
        ['raw rsync', async () => {
          const m = await timedSh('target', 'cd "$1" && find . -type f -print0 | xargs -0 -r sha256sum > "$2"', tree, sums);
          const y = await timedSh('target', 'rsync -a -e "$1" "$2"/ "root@vault:$3/"', sshToVault, tree, rawDest);
          const s = await timedSh('target', 'scp -q -F "$1" -i "$2" "$3" "root@vault:$4.sha256"', net.sshConfigPath, net.clientKey.privateKeyPath, sums, rawDest);
          const c = await timedSh('vault', 'cd "$1" && sha256sum -c --quiet "$1.sha256"', rawDest);
          add('raw rsync', { ms: m + y + s + c, extra: { manifestMs: m } });
        }],
      ];
      for (let i = 0; i < capture.length; i++) {
        const [name, fn] = capture[(i + r) % capture.length]!;
        log(`round ${r + 1}/${rounds}: ${name}`);
        await fn();
      }
      // ---- landing onto the target
      const landing: [string, () => Promise<void>][] = [
        ['rubicon restic landing', async () => {
          const dest = path.join(t.dataDir, `land-rub-restic-${tag}`);
          outputs.push({ host: 'target', path: dest });
          await emptyResticCache();
          const c = await call('land', { key: `offsite-${tag}`, kind: 'restic', path: rubRepo, artifactId: `bench.${tag}.restic`, locator: captured.restic!.locator, srcDir: tree, dest, entries });
          if (!c.ok) throw new Error('Rubicon landing (restic) did not validate');
          add('rubicon restic landing', { ms: c.ms, calls: c.calls, extra: { restoreMs: c.restoreMs } });
        }],
        ['raw restic landing', async () => {
          const dest = path.join(t.dataDir, `land-raw-restic-${tag}`);
          outputs.push({ host: 'target', path: dest });
          await emptyResticCache();
          const restore = await timedSh('target', 'restic -q -r "sftp:root@vault:$1" -o "sftp.command=$2" restore latest --target "$3"', rawRepo, sftpCmd, dest);
          const check = await timedSh('target', 'cd "$1$2" && sha256sum -c --quiet "$3"', dest, tree, sums);
          add('raw restic landing', { ms: restore + check, extra: { restoreMs: restore } });
        }],
        ['rubicon rsync landing', async () => {
          const dest = path.join(t.dataDir, `land-rub-rsync-${tag}`);
          outputs.push({ host: 'target', path: dest });
          const c = await call('land', { key: `nas-${tag}`, kind: 'sftp', path: rubSftp, artifactId: `bench.${tag}.rsync`, locator: captured.rsync!.locator, srcDir: tree, dest, entries });
          if (!c.ok) throw new Error('Rubicon landing (rsync) did not validate');
          add('rubicon rsync landing', { ms: c.ms, calls: c.calls, extra: { restoreMs: c.restoreMs } });
        }],
        ['raw rsync landing', async () => {
          const dest = path.join(t.dataDir, `land-raw-rsync-${tag}`);
          outputs.push({ host: 'target', path: dest });
          const restore = await timedSh('target', 'rsync -a -e "$1" "root@vault:$2/" "$3/"', sshToVault, rawDest, dest);
          const check = await timedSh('target', 'cd "$1" && sha256sum -c --quiet "$2"', dest, sums);
          add('raw rsync landing', { ms: restore + check, extra: { restoreMs: restore } });
        }],
      ];
      for (let i = 0; i < landing.length; i++) {
        const [name, fn] = landing[(i + r) % landing.length]!;
        log(`round ${r + 1}/${rounds}: ${name}`);
        await fn();
      }
    }
    proc.stdin!.end();
    await proc;

    // ---- the table
    const ms = (k: string, f: (s: Sample) => number = (s) => s.ms) => (S[k] ?? []).map(f);
    const sum = (a: number[], b: number[]) => a.map((x, i) => x + (b[i] ?? 0));
    const line = (name: string, xs: number[], calls?: number[]) =>
      `  ${name.padEnd(44)} min ${fmt(Math.min(...xs)).padStart(9)}  median ${fmt(median(xs)).padStart(9)}${calls ? `  ssh calls ${[...new Set(calls)].join('/')}` : ''}`;
    const out: string[] = [];
    out.push(`Remote data plane, ${files} files, ${(bytes / 1e9).toFixed(2)} GB, ${rounds} interleaved rounds (${new Date().toISOString()}, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')})`);
    out.push('');
    const rubResticCap = ms('rubicon restic capture');
    const rubResticChk = ms('rubicon restic check');
    const rawResticCap = ms('raw restic backup');
    const rawResticChk = ms('raw restic check');
    out.push(line('rubicon restic capture (grant+backup+docs)', rubResticCap, ms('rubicon restic capture', (s) => s.calls ?? 0)));
    out.push(line('rubicon restic copy check (check+ls+doc)', rubResticChk, ms('rubicon restic check', (s) => s.calls ?? 0)));
    out.push(line('raw restic backup', rawResticCap));
    out.push(line('raw restic check --read-data', rawResticChk));
    out.push(line('rubicon rsync (manifest+rsync+vault hashes)', ms('rubicon rsync'), ms('rubicon rsync', (s) => s.calls ?? 0)));
    out.push(line('  of which the manifest on the target', ms('rubicon rsync', (s) => s.extra?.manifestMs ?? 0)));
    out.push(line('raw sha256sum + rsync -a + scp + sha256sum -c', ms('raw rsync')));
    out.push(line('  of which sha256sum on the target', ms('raw rsync', (s) => s.extra?.manifestMs ?? 0)));
    out.push(line('rubicon restic landing (restore+verify)', ms('rubicon restic landing'), ms('rubicon restic landing', (s) => s.calls ?? 0)));
    out.push(line('  of which the restore', ms('rubicon restic landing', (s) => s.extra?.restoreMs ?? 0)));
    out.push(line('raw restic restore + sha256sum -c', ms('raw restic landing')));
    out.push(line('  of which restic restore', ms('raw restic landing', (s) => s.extra?.restoreMs ?? 0)));
    out.push(line('rubicon rsync landing (rsync+verify)', ms('rubicon rsync landing'), ms('rubicon rsync landing', (s) => s.calls ?? 0)));
    out.push(line('  of which the rsync', ms('rubicon rsync landing', (s) => s.extra?.restoreMs ?? 0)));
    out.push(line('raw rsync -a back + sha256sum -c', ms('raw rsync landing')));
    out.push(line('  of which rsync -a', ms('raw rsync landing', (s) => s.extra?.restoreMs ?? 0)));
    out.push('');
    const target = (name: string, a: number[], b: number[], limit = 1.1) => {
      const best = Math.min(...a) / Math.min(...b);
      const med = median(a) / median(b);
      return `  ${name.padEnd(58)} best/best ${best.toFixed(2)}x  median/median ${med.toFixed(2)}x  ${best <= limit ? 'MET' : 'MISSED'}`;
    };
    out.push(`Targets: Rubicon <= 1.10x the raw tools (MET/MISSED on best/best)`);
    out.push(target('restic capture + copy check vs backup + check --read-data', sum(rubResticCap, rubResticChk), sum(rawResticCap, rawResticChk)));
    out.push(target('  capture alone vs restic backup', rubResticCap, rawResticCap));
    out.push(target('  copy check alone vs restic check --read-data', rubResticChk, rawResticChk));
    out.push(target('rsync method vs sha256sum + rsync -a + sha256sum -c', ms('rubicon rsync'), ms('raw rsync')));
    out.push(target('restic landing vs restic restore + sha256sum -c', ms('rubicon restic landing'), ms('raw restic landing')));
    out.push(target('rsync landing vs rsync -a back + sha256sum -c', ms('rubicon rsync landing'), ms('raw rsync landing')));
    out.push('  (for information, against the bare restore without any validation:)');
    out.push(target('  restic landing vs restic restore alone', ms('rubicon restic landing'), ms('raw restic landing', (s) => s.extra?.restoreMs ?? 0)));
    out.push(target('  rsync landing vs rsync -a alone', ms('rubicon rsync landing'), ms('raw rsync landing', (s) => s.extra?.restoreMs ?? 0)));
    out.push(target('  restic capture+check+manifest vs backup + check', sum(sum(rubResticCap, rubResticChk), ms('rubicon rsync', (s) => s.extra?.manifestMs ?? 0)), sum(rawResticCap, rawResticChk)));
    process.stdout.write(`${out.join('\n')}\n`);
    for (const o of outputs) rmSync(o.path, { recursive: true, force: true });
    if (args.includes('--traces')) {
      const keepTo = args[args.indexOf('--traces') + 1]!;
      mkdirSync(keepTo, { recursive: true });
      cpSync(traceDir, keepTo, { recursive: true });
      log(`traces: ${keepTo}`);
    }
  } finally {
    await net.destroy();
    rmSync(local, { recursive: true, force: true });
  }
}

if (args[0] === '--child') {
  await child(JSON.parse(args[1] ?? '{}') as ChildConfig);
} else {
  await main();
}
