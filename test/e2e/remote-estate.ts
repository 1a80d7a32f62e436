import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildSandbox, technicianChanges } from '../../src/sandbox/estate.ts';
import type { TestNet } from '../hosts/index.ts';
import { BIN, type CliResult } from './helpers.ts';

/**
 * SCENARIO.md's estate on the story's three namespaced hosts: the target
 * (a Linux server reached over ssh) holds the EHR folders and the SQLite
 * database, the vault host holds an SFTP vault and a restic repository, the
 * proving ground has no route to the target. Rubicon runs in `ctl`. The
 * crossing is manual: the test plays the engineer.
 */
export type StoryNet = TestNet<'target' | 'vault' | 'pg' | 'ctl'>;

export interface RemoteEstate {
  runbook: string;
  stateDir: string;
  /** The target's root on the shared filesystem. */
  targetRoot: string;
  rebuiltKnownHosts: string;
  vaultPaths: { nas: string; restic: string };
}

export const OLD_OS = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n';
export const NEW_OS = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\nID=debian\n';

export async function buildRemoteEstate(net: StoryNet, o: { patients?: number; vendorMode?: 'truncate' | 'good'; policy?: string } = {}): Promise<RemoteEstate> {
  const t = net.hosts.target;
  const estate = path.join(t.dataDir, 'estate');
  await buildSandbox(estate, { patients: o.patients ?? 300, vendorMode: o.vendorMode ?? 'truncate' });
  t.setOsRelease(OLD_OS);
  const ctlDir = path.join(net.dir, 'ctl-files');
  await mkdir(ctlDir, { recursive: true });
  const passwordFile = path.join(ctlDir, 'restic.pass');
  await writeFile(passwordFile, `${randomBytes(18).toString('base64')}\n`, { mode: 0o600 });
  const knownHosts = path.join(ctlDir, 'known_hosts');
  await copyFile(net.knownHostsPath, knownHosts);
  const rebuiltKnownHosts = path.join(ctlDir, 'known_hosts.rebuilt');
  const key = net.clientKey.privateKeyPath;
  const vaultDir = net.hosts.vault.dataDir;
  const ssh = (host: string) => `{ host: ${host}, user: root, identityFile: ${key}, knownHosts: ${knownHosts}, connectTimeoutSeconds: 5 }`;
  const vaultHost = `{ host: vault, user: root, identityFile: ${key}, knownHosts: ${knownHosts}, connectTimeoutSeconds: 5, authorizedKeysFile: ${net.hosts.vault.authorizedKeysPath} }`;
  const runbook = path.join(ctlDir, 'runbook.yaml');
  const now = new Date().toISOString();
  await writeFile(
    runbook,
    `version: 1
name: ehr-upgrade-ssh
target:
  name: ehr-server
  root: ${path.join(estate, 'target')}
  image: Debian GNU/Linux 13 (trixie)
  transport: { kind: ssh, ${ssh('target').slice(2, -2)} }
  workDir: ${path.join(t.dataDir, 'rubicon')}
provingGround:
  transport: { kind: ssh, ${ssh('pg').slice(2, -2)} }
  root: ${path.join(net.hosts.pg.dataDir, 'proving')}
  workDir: ${path.join(net.hosts.pg.dataDir, 'rubicon')}
infra:
  kind: manual
  currentImage: Debian GNU/Linux 12 (bookworm)
  rebuilt:
    osRelease: Debian GNU/Linux 13 (trixie)
    knownHosts: ${rebuiltKnownHosts}
  rollback: { description: "hypervisor snapshot ehr-server-pre-upgrade" }
declared:
  folders: [ehr/A, mssql/backup]
vendorJobs:
  - name: vendor SQL backup job
    database: ehr
    command: [${process.execPath}, ehr/A/bin/sqlbackup.ts, mssql/data/ehr.db, mssql/backup, --mode, ${o.vendorMode ?? 'truncate'}]
    output: mssql/backup
    timeoutSeconds: 600
discovery:
  roots: [ehr, mssql]
  depth: 1
vaults:
  - { name: nas, kind: sftp, host: ${vaultHost}, path: ${path.join(vaultDir, 'nas')} }
  - { name: offsite, kind: restic, host: ${vaultHost}, path: ${path.join(vaultDir, 'restic')}, passwordFile: ${passwordFile} }
policy: ${o.policy ?? '{}'}
manualSteps:
  - { id: vendor-window, description: The vendor confirmed the maintenance window, confirmedBy: vendor technician, confirmedAt: "${now}" }
  - { id: rollback-snapshot, description: The hypervisor snapshot ehr-server-pre-upgrade exists, confirmedBy: engineer, confirmedAt: "${now}" }
`,
  );
  return {
    runbook,
    stateDir: path.join(ctlDir, 'state'),
    targetRoot: path.join(estate, 'target'),
    rebuiltKnownHosts,
    vaultPaths: { nas: path.join(vaultDir, 'nas'), restic: path.join(vaultDir, 'restic') },
  };
}

/** Runs the Rubicon CLI inside `ctl`, as the orchestrator. */
export async function ctlCli(net: StoryNet, args: string[], env: Record<string, string> = {}): Promise<CliResult & { pid: number | undefined }> {
  const p = net.node('ctl', [BIN, ...args], { env: { NO_COLOR: '1', ...env } });
  const r = await p;
  return parseCli(r, p.pid);
}

export function parseCli(r: { exitCode?: number; signal?: string; stdout: unknown; stderr: unknown }, pid?: number): CliResult & { pid: number | undefined } {
  const events: Record<string, unknown>[] = [];
  for (const line of String(r.stdout).split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* not an event */
    }
  }
  return { exitCode: r.exitCode, signal: r.signal ?? undefined, stdout: String(r.stdout), stderr: String(r.stderr), events, summary: events.find((e) => e.kind === 'summary'), pid };
}

/** The engineer reinstalls the server: its data is gone, a new machine id, a new OS, a new host key (put into the rebuilt known_hosts from "the console"). */
export async function engineerRebuilds(net: StoryNet, e: RemoteEstate): Promise<void> {
  const { rm } = await import('node:fs/promises');
  await rm(e.targetRoot, { recursive: true, force: true });
  const t = net.hosts.target;
  t.setMachineId(randomBytes(16).toString('hex'));
  t.setOsRelease(NEW_OS);
  await t.sshd.regenerateHostKey();
  await net.updateKnownHosts();
  await copyFile(net.knownHostsPath, e.rebuiltKnownHosts);
}

/** The vendor technician changes files in ehr/A after the proofs (the shared filesystem: straight onto the target). */
export async function technician(e: RemoteEstate): Promise<string[]> {
  return technicianChanges(e.targetRoot);
}

export function runIdOf(r: CliResult): string {
  const first = r.events.find((x) => (x as { event?: { type?: string } }).event?.type === 'run.started') as { event: { runId: string } } | undefined;
  if (!first) throw new Error(`no run.started in the output: ${r.stderr.slice(-2000)}`);
  return first.event.runId;
}

export function journalEvents(stateDir: string, runId: string): { type: string; [k: string]: unknown }[] {
  const f = path.join(stateDir, 'runs', runId, 'journal.jsonl');
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { event: { type: string } }).event);
}

/** Waits until process `pid` is stopped (a `stop@<checkpoint>` fault reached), by its /proc state; throws if it ended first. */
export async function waitStopped(pid: number): Promise<void> {
  for (let i = 0; i < 12_000; i++) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (/\) T /.test(stat)) return;
    if (stat === '') throw new Error('the run ended before it reached the checkpoint');
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the run never stopped at the checkpoint');
}

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * A login shell for a test host whose PATH the test switches between cases:
 * `without(['restic'])` makes restic missing on that host (every host shares
 * this machine's filesystem, so a missing tool has to be missing from PATH:
 * a folder of links to every program but those), `all()` puts it back.
 * Commands that sshd runs read the PATH at their start, so a switch takes
 * effect with the next ssh command. Make it before the net (the shell is in
 * the host's /etc/passwd); `remove()` after the net is destroyed.
 */
export function switchableToolShell(): { shell: string; without(tools: string[]): void; all(): void; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-tools-'));
  chmodSync(dir, 0o755);
  const env = path.join(dir, 'path.env');
  const shell = path.join(dir, 'shell');
  writeFileSync(env, `PATH=${SYSTEM_PATH}\n`);
  writeFileSync(shell, `#!/bin/sh\n. ${env}\nexport PATH\nexec /bin/sh "$@"\n`);
  chmodSync(shell, 0o755);
  return {
    shell,
    without(tools: string[]) {
      const bin = path.join(dir, `bin-${tools.join('-')}`);
      if (!existsSync(bin)) {
        mkdirSync(bin);
        for (const src of SYSTEM_PATH.split(':')) {
          if (!existsSync(src)) continue;
          for (const name of readdirSync(src)) if (!tools.includes(name) && !existsSync(path.join(bin, name))) symlinkSync(path.join(src, name), path.join(bin, name));
        }
      }
      writeFileSync(env, `PATH=${bin}\n`);
    },
    all() {
      writeFileSync(env, `PATH=${SYSTEM_PATH}\n`);
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every file under `dir` (recursively) whose bytes contain `needle`: where a secret would have leaked. */
export async function filesHolding(dir: string, needle: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const want = Buffer.from(needle);
  const out: string[] = [];
  for (const f of readdirSync(dir, { recursive: true }).map(String)) {
    const p = path.join(dir, f);
    const { statSync } = await import('node:fs');
    if (!statSync(p).isFile()) continue;
    if ((await readFile(p)).includes(want)) out.push(f);
  }
  return out;
}
