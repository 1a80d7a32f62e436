// The orchestrator's side of the tool-vault tests, run by the test INSIDE the
// controller host of a test net (net.node('ctl', ...)): only there do the
// test hosts' addresses route. It speaks JSON lines: one request
// {id, op, args} per stdin line, one answer {id, ok, value | error} per
// stdout line. Everything it does goes through Rubicon's own code: SSH
// machines, the step runner, the vaults.
import { createInterface } from 'node:readline';
import { isRubiconError } from '../../src/core/errors.ts';
import type { ManifestEntry } from '../../src/core/types.ts';
import type { Machine } from '../../src/machines/machine.ts';
import { SshMachine } from '../../src/machines/ssh.ts';
import { buildTreeManifest } from '../../src/machines/tree.ts';
import { createStepRunner, type StepJournal } from '../../src/run/steps.ts';
import type { SshSettings } from '../../src/runbook/load.ts';
import { createResticVault } from '../../src/vaults/restic.ts';
import { createSftpVault } from '../../src/vaults/sftp.ts';
import type { Grant, ToolVault } from '../../src/vaults/vault.ts';
import type { TestNetInfo } from '../hosts/index.ts';

interface Config {
  net: TestNetInfo;
  runId: string;
  runDir: string;
  /** Rubicon's work folder per host (absolute). */
  workDirs: Record<string, string>;
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const net = config.net;
const machines = new Map<string, SshMachine>();

function machine(name: string): SshMachine {
  let m = machines.get(name);
  if (!m) {
    const workDir = config.workDirs[name];
    if (!workDir) throw new Error(`no work folder for host ${name}`);
    m = new SshMachine({
      name,
      host: name,
      port: 22,
      user: 'root',
      identityFile: net.clientKey.privateKeyPath,
      knownHostsFile: net.knownHostsPath,
      connectTimeoutSeconds: 5,
      stepsRoot: `${workDir}/steps/${config.runId}`,
      commandTimeoutSeconds: 120,
    });
    machines.set(name, m);
  }
  return m;
}

const started = new Set<string>();
const completed = new Map<string, { exitCode: number }>();
const journal: StepJournal = {
  record(e) {
    if (e.type === 'step.started') started.add(e.stepId);
    else completed.set(e.stepId, { exitCode: e.exitCode });
  },
  completed: (id) => completed.get(id),
  started: (id) => started.has(id),
};
const runner = createStepRunner(journal, config.runDir, config.runId);
const vaults = new Map<string, ToolVault>();

function vault(key: string): ToolVault {
  const v = vaults.get(key);
  if (!v) throw new Error(`no vault "${key}" (make it with op newVault)`);
  return v;
}

interface NewVault {
  key: string;
  kind: 'sftp' | 'restic';
  name: string;
  host: string;
  path: string;
  passwordFile?: string;
  /** Shift of the grant clock (tests make grants that are already expired). */
  nowOffsetMs?: number;
}

function hostSettings(host: string): SshSettings & { authorizedKeysFile?: string } {
  const h = net.hosts.find((x) => x.name === host);
  if (!h) throw new Error(`no host ${host}`);
  return {
    kind: 'ssh',
    host,
    port: 22,
    user: 'root',
    identityFile: net.clientKey.privateKeyPath,
    knownHosts: net.knownHostsPath,
    connectTimeoutSeconds: 5,
    commandTimeoutSeconds: 120,
    authorizedKeysFile: h.authorizedKeysPath,
  };
}

const ops: Record<string, (a: any) => Promise<unknown>> = {
  async newVault(a: NewVault) {
    const deps = {
      vaultHost: machine(a.host),
      runId: config.runId,
      workDirOf: (m: Machine) => config.workDirs[m.name]!,
      ...(a.nowOffsetMs ? { now: () => new Date(Date.now() + a.nowOffsetMs!) } : {}),
    };
    const v =
      a.kind === 'sftp'
        ? createSftpVault({ name: a.name, kind: 'sftp', host: hostSettings(a.host), path: a.path }, deps)
        : createResticVault({ name: a.name, kind: 'restic', host: hostSettings(a.host), path: a.path, password: { file: a.passwordFile! } }, deps);
    vaults.set(a.key, v);
    return { info: v.info, caps: v.caps, tool: v.tool };
  },
  async manifest(a: { machine: string; dir: string; stepId: string; base?: ManifestEntry[] }) {
    const r = await buildTreeManifest(runner.onMachine, machine(a.machine), { id: a.stepId, idempotent: true }, a.dir, { base: a.base });
    return r;
  },
  async ensureInitialized(a: { vault: string }) {
    const v = vault(a.vault) as ToolVault & { ensureInitialized?: () => Promise<string> };
    return v.ensureInitialized?.();
  },
  async grant(a: { vault: string; machine: string; mode: 'read' | 'write'; ttlMs: number; withoutSecret?: boolean }) {
    return vault(a.vault).grant(machine(a.machine), a.mode, a.ttlMs, a.withoutSecret ? { withoutSecret: true } : {});
  },
  async opens(a: { machine: string; grant: Grant }) {
    return (vault('restic') as unknown as { opens(m: unknown, g: Grant): Promise<unknown> }).opens(machine(a.machine), a.grant);
  },
  async revoke(a: { vault: string; grant: Grant }) {
    await vault(a.vault).revoke(a.grant);
    return null;
  },
  async ingest(a: { vault: string; machine: string; grant: Grant; artifactId: string; stepId: string; srcDir: string; entries: ManifestEntry[]; base?: { artifactId: string; locator: string } }) {
    return vault(a.vault).ingest(runner.run, machine(a.machine), a.grant, { ...a, files: a.entries.map((e) => e.path) });
  },
  async checkCopy(a: { vault: string; artifactId: string; locator: string; entries: ManifestEntry[]; stepId: string; srcDir?: string }) {
    return vault(a.vault).checkCopy(runner.run, a);
  },
  async restoreTo(a: { vault: string; machine: string; grant: Grant; artifactId: string; locator: string; dest: string; stepId: string; srcDir: string }) {
    await vault(a.vault).restoreTo(runner.run, machine(a.machine), a.grant, a);
    return null;
  },
  async putBytes(a: { vault: string; base64: string }) {
    return vault(a.vault).putBytes(Buffer.from(a.base64, 'base64'));
  },
  async has(a: { vault: string; sha256: string }) {
    return vault(a.vault).has(a.sha256);
  },
  async read(a: { vault: string; sha256: string }) {
    const chunks: Uint8Array[] = [];
    for await (const c of vault(a.vault).read(a.sha256)) chunks.push(c);
    return Buffer.concat(chunks).toString('base64');
  },
  async check(a: { vault: string; sha256: string; size?: number }) {
    return vault(a.vault).check(a.sha256, a.size);
  },
  async putArtifactIndex(a: { vault: string; entry: Parameters<ToolVault['putArtifactIndex']>[0] }) {
    await vault(a.vault).putArtifactIndex(a.entry);
    return null;
  },
  async putArtifactDocuments(a: { vault: string; base64: string; entry: Parameters<ToolVault['putArtifactIndex']>[0] }) {
    const v = vault(a.vault);
    if (!v.putArtifactDocuments) throw new Error(`vault ${a.vault} has no putArtifactDocuments`);
    return v.putArtifactDocuments(Buffer.from(a.base64, 'base64'), a.entry);
  },
  async putRunDocument(a: { vault: string; runId: string; name: string; base64: string }) {
    await vault(a.vault).putRunDocument!(a.runId, a.name, Buffer.from(a.base64, 'base64'));
    return null;
  },
  async listRunDocuments(a: { vault: string; runId: string }) {
    return (await vault(a.vault).listRunDocuments!(a.runId)).map((d) => ({ name: d.name, where: d.where, text: Buffer.from(d.data).toString('utf8') }));
  },
  async listArtifacts(a: { vault: string }) {
    return vault(a.vault).listArtifacts();
  },
  async sync(a: { vault: string }) {
    await vault(a.vault).sync();
    return null;
  },
  async createWriter(a: { vault: string }) {
    await vault(a.vault).createWriter();
    return null;
  },
  async exec(a: { machine: string; argv: string[]; input?: string }) {
    return machine(a.machine).exec({ argv: a.argv, ...(a.input !== undefined ? { input: a.input } : {}) });
  },
  async stepCount(a: { prefix: string }) {
    return [...started].filter((s) => s.includes(a.prefix)).length;
  },
};

const rl = createInterface({ input: process.stdin });
let pending = Promise.resolve();
rl.on('line', (line) => {
  pending = pending.then(async () => {
    const req = JSON.parse(line) as { id: number; op: string; args: unknown };
    let answer: unknown;
    try {
      const op = ops[req.op];
      if (!op) throw new Error(`unknown op ${req.op}`);
      answer = { id: req.id, ok: true, value: (await op(req.args)) ?? null };
    } catch (e) {
      answer = isRubiconError(e)
        ? { id: req.id, ok: false, error: { code: e.code, message: e.message, hint: e.hint, details: e.details } }
        : { id: req.id, ok: false, error: { code: 'JS', message: e instanceof Error ? `${e.message}\n${e.stack}` : String(e) } };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  });
});
rl.on('close', () => {
  void pending.then(async () => {
    for (const m of machines.values()) await m.close();
    process.exit(0);
  });
});
