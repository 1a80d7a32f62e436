import { statfsSync } from 'node:fs';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNet, requireTestNet, storyNet } from '../hosts/index.ts';
import { BIN, removeTempDirs } from './helpers.ts';
import { buildRemoteEstate, ctlCli, journalEvents, parseCli, runIdOf, switchableToolShell, waitStopped, type RemoteEstate, type StoryNet } from './remote-estate.ts';

/**
 * Faults over ssh (issue 7), on the story's three namespaced hosts: one run
 * of SCENARIO.md's upgrade meets one fault after another — sqlite3 missing
 * on the target, restic missing there, the target's sshd killed in the
 * middle of the capture, a wrong restic password, the vault host's key
 * unknown, a key the target refuses, the vault host unreachable, the proving
 * ground's host key changed, the vault host's disk full (a tmpfs) in the
 * middle of the capture. Each stops the run with exit 1 and a message
 * naming the machine and the fix; none is counted as a capture failure, a
 * damaged copy or a failed proof (so the gate never reads an environment
 * fault as "this method cannot capture it"); after each is fixed,
 * `rubicon resume` carries on, and the last resume reaches the manual
 * crossing with every artifact captured once and proven. One net and one
 * run for the whole file: a full run over ssh takes a minute or more.
 */
const noNet = requireTestNet();

type Cli = Awaited<ReturnType<typeof ctlCli>>;
interface Failure { code: string; message: string; hint?: string }

const tools = noNet ? undefined : switchableToolShell();
let net: StoryNet;
let e: RemoteEstate;
let runId = '';
let knownHosts = '';

beforeAll(async () => {
  if (noNet) return;
  // The vault host's disk is a small tmpfs (a full run over ssh stores well under 64 MB there), filled on purpose by one case.
  net = await createTestNet(storyNet({ target: { shell: tools!.shell }, vault: { diskMb: 128 } }));
  e = await buildRemoteEstate(net);
  knownHosts = path.join(path.dirname(e.runbook), 'known_hosts');
}, 120_000);
afterAll(async () => {
  await net?.destroy();
  tools?.remove();
  await removeTempDirs();
});

const resume = (env: Record<string, string> = {}) => ctlCli(net, ['resume', runId, '--state-dir', e.stateDir, '--yes', '--json'], env);
const why = (r: Cli) => `${JSON.stringify((r.summary as { error?: unknown })?.error)} ${JSON.stringify((r.summary as { gate?: { reasons?: unknown } })?.gate?.reasons)}\n${r.stderr.slice(-2500)}`;

/** Exit 1, outcome failed, the error's code, the machine named in the message, the fix in the hint; the same text on the terminal. */
function expectStopped(r: Cli, code: string, machine: RegExp, fix: RegExp): Failure {
  expect(r.stderr, why(r)).not.toMatch(/internal error/i);
  expect(r.exitCode, why(r)).toBe(1);
  expect(r.summary).toMatchObject({ outcome: 'failed' });
  const err = (r.summary as { error?: Failure }).error!;
  expect(err.code, why(r)).toBe(code);
  expect(err.message).toMatch(machine);
  expect(err.hint ?? '').toMatch(fix);
  return err;
}

/** Nothing counted that is not there: no capture failure, no copy but intact ones, no failed proof but the vendor's, nothing captured twice, the run resumable. */
function expectNothingCounted(): void {
  const ev = journalEvents(e.stateDir, runId);
  expect(ev.filter((x) => x.type === 'capture.failed')).toEqual([]);
  expect(ev.filter((x) => x.type === 'copy.checked' && (x as unknown as { copy: { status: string } }).copy.status !== 'ok')).toEqual([]);
  const proofs = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { artifactId: string; outcome: string } }).proof);
  expect(proofs.filter((p) => p.outcome !== 'passed' && !p.artifactId.includes('vendor-job'))).toEqual([]);
  const keys = ev.filter((x) => x.type === 'artifact.captured').map((x) => (x as unknown as { artifact: { phase: string; itemId: string; method: string } }).artifact).map((a) => `${a.phase}|${a.itemId}|${a.method}`);
  expect(new Set(keys).size).toBe(keys.length);
  expect(ev.some((x) => x.type === 'gate.evaluated')).toBe(false);
  // This process's last word (cleanup notes and revoked grants may follow it).
  const last = ev.slice(ev.findLastIndex((x) => x.type === 'run.started' || x.type === 'run.resumed'));
  expect(last.filter((x) => x.type === 'run.completed')).toEqual([expect.objectContaining({ outcome: 'failed', exitCode: 1 })]);
}

const captured = () => journalEvents(e.stateDir, runId).filter((x) => x.type === 'artifact.captured').length;

describe.skipIf(noNet)(`faults over ssh, one after another in one run, each resumed${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  it('sqlite3 missing on the target: TOOL_MISSING naming the target and the package, no capture counted', { timeout: 600_000 }, async () => {
    tools!.without(['sqlite3']);
    const r = await ctlCli(net, ['upgrade', '--runbook', e.runbook, '--state-dir', e.stateDir, '--yes', '--json']);
    runId = runIdOf(r);
    expectStopped(r, 'TOOL_MISSING', /sqlite3.*target|target.*sqlite3/, /apt-get install sqlite3|install sqlite3/);
    expectNothingCounted();
    expect(journalEvents(e.stateDir, runId).filter((x) => x.type === 'artifact.captured' && String((x as unknown as { artifact: { method: string } }).artifact.method).startsWith('sqlite3'))).toEqual([]);
  });

  it('restic missing on the target: TOOL_MISSING naming the target and restic; the resume after sqlite3 is back gets that far', { timeout: 600_000 }, async () => {
    tools!.without(['restic']);
    const r = await resume();
    expectStopped(r, 'TOOL_MISSING', /restic.*target|target.*restic/, /restic/);
    expectNothingCounted();
    expect(journalEvents(e.stateDir, runId).filter((x) => x.type === 'run.resumed')).toHaveLength(1);
  });

  it("the target's sshd killed in the middle of the capture: MACHINE_UNREACHABLE naming the target; nothing half-done is counted", { timeout: 600_000 }, async () => {
    tools!.all();
    const before = captured();
    // The resume stops (SIGSTOP) after its second capture; the target's sshd dies, with the run's open connection to it.
    const p = net.node('ctl', [BIN, 'resume', runId, '--state-dir', e.stateDir, '--yes', '--json'], { env: { NO_COLOR: '1', RUBICON_FAULT: 'stop@artifact.captured#2' } });
    await waitStopped(p.pid!);
    await net.hosts.target.sshd.kill();
    try {
      process.kill(p.pid!, 'SIGCONT');
      const r = parseCli(await p, p.pid);
      expectStopped(r, 'MACHINE_UNREACHABLE', /target/, /sshd|up|reach/);
      expectNothingCounted();
      expect(captured()).toBeGreaterThanOrEqual(before + 2);
    } finally {
      await net.hosts.target.sshd.start();
    }
  });

  it('a wrong restic password: VAULT_PASSWORD naming the vault and the password file; the repository is left as it was', { timeout: 600_000 }, async () => {
    const good = await readFile(path.join(path.dirname(e.runbook), 'restic.pass'));
    await writeFile(path.join(path.dirname(e.runbook), 'restic.pass'), 'not-the-password\n', { mode: 0o600 });
    try {
      const before = captured();
      const r = await resume();
      const err = expectStopped(r, 'VAULT_PASSWORD', /offsite/, /password/);
      expect(`${err.message} ${err.hint}`).not.toContain('not-the-password');
      expect(r.stdout + r.stderr).not.toContain(good.toString().trim());
      expectNothingCounted();
      expect(captured()).toBe(before);
    } finally {
      await writeFile(path.join(path.dirname(e.runbook), 'restic.pass'), good, { mode: 0o600 });
    }
  });

  it("the vault host's key is not in the runbook's known_hosts: MACHINE_HOST_KEY naming the vault host and how to get its key", { timeout: 600_000 }, async () => {
    const full = await readFile(knownHosts, 'utf8');
    await writeFile(knownHosts, net.knownHostsText(['target', 'pg']));
    try {
      const r = await resume();
      expectStopped(r, 'MACHINE_HOST_KEY', /vault/, /known_hosts|ssh-keyscan/);
      expectNothingCounted();
    } finally {
      await writeFile(knownHosts, full);
    }
  });

  it('a key the target refuses: MACHINE_AUTH naming the target and the key file', { timeout: 600_000 }, async () => {
    const keyFile = net.clientKey.privateKeyPath;
    const saved = await readFile(keyFile);
    const other = await net.makeClientKey('not-authorized');
    await copyFile(other.privateKeyPath, keyFile);
    try {
      const r = await resume();
      expectStopped(r, 'MACHINE_AUTH', /target/, /authorized_keys|identityFile/);
      expectNothingCounted();
    } finally {
      await writeFile(keyFile, saved, { mode: 0o600 });
    }
  });

  it('the vault host unreachable (its links down): MACHINE_UNREACHABLE naming the vault host, quickly', { timeout: 600_000 }, async () => {
    await net.exec('vault', ['sh', '-c', 'ip link set eth0 down && ip link set eth1 down']);
    try {
      const t = Date.now();
      const r = await resume();
      expectStopped(r, 'MACHINE_UNREACHABLE', /vault/, /up|reach/);
      expectNothingCounted();
      expect(Date.now() - t).toBeLessThan(60_000);
    } finally {
      await net.exec('vault', ['sh', '-c', 'ip link set eth0 up && ip link set eth1 up']);
    }
  });

  it("the vault host's disk fills during the capture: NO_SPACE naming the vault host and the fix, nothing counted; the resume after space is freed carries on", { timeout: 600_000 }, async () => {
    const before = captured();
    // Ballast on the vault host's tmpfs (the hosts share this machine's filesystem) leaves it less than 1 MB.
    const ballast = path.join(net.hosts.vault.dataDir, 'ballast');
    const { bavail, bsize } = statfsSync(net.hosts.vault.dataDir);
    const free = bavail * bsize;
    expect(free).toBeGreaterThan(32 * 1024 * 1024);
    await writeFile(ballast, Buffer.alloc(free - 768 * 1024));
    try {
      const r = await resume();
      const err = expectStopped(r, 'NO_SPACE', /vault/, /free|space/);
      // Here the copy cut off is restic's over sftp (the repository's host, after restic's own retries: about a minute).
      expect(err.message).toMatch(/vault '(nas|offsite)'.*\(ssh root@vault:22\), has no space left in \S+\/srv\/(nas|restic)/);
      expect(err.hint).toMatch(/then resume the run/);
      expectNothingCounted();
    } finally {
      await rm(ballast, { force: true });
    }
    // Freed: the next resume (the wrong password's, then the others) goes on; this one captured nothing new that is not there.
    expect(captured()).toBeGreaterThanOrEqual(before);
  });

  it("the proving ground's host key changed: MACHINE_HOST_KEY (changed) naming it, before any proof is counted", { timeout: 600_000 }, async () => {
    await net.hosts.pg.sshd.regenerateHostKey();
    try {
      const r = await resume();
      const err = expectStopped(r, 'MACHINE_HOST_KEY', /pg/, /known_hosts/);
      expect(err.message).toMatch(/rebuilt, or someone is in between/);
      expectNothingCounted();
    } finally {
      await net.updateKnownHosts();
      await copyFile(net.knownHostsPath, knownHosts);
    }
  });

  it('the last resume reaches the manual crossing: every artifact captured once and proven, the gate passes', { timeout: 600_000 }, async () => {
    const r = await resume();
    expect(r.exitCode, why(r)).toBe(4);
    expect(r.summary).toMatchObject({ outcome: 'waiting' });
    const ev = journalEvents(e.stateDir, runId);
    expect(ev.filter((x) => x.type === 'run.resumed')).toHaveLength(9);
    expect(ev.filter((x) => x.type === 'capture.failed')).toEqual([]);
    const artifacts = ev.filter((x) => x.type === 'artifact.captured').map((x) => (x as unknown as { artifact: { id: string; phase: string; itemId: string; method: string } }).artifact);
    const keys = artifacts.map((a) => `${a.phase}|${a.itemId}|${a.method}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const m of ['restic', 'rsync', 'sqlite3-backup', 'sqlite3-dump', 'vendor-job']) expect(artifacts.some((a) => a.method === m), m).toBe(true);
    const proofs = ev.filter((x) => x.type === 'proof.recorded').map((x) => (x as unknown as { proof: { artifactId: string; outcome: string } }).proof);
    for (const a of artifacts.filter((x) => x.phase === 'capture')) expect(proofs.filter((p) => p.artifactId === a.id), a.id).toHaveLength(1);
    for (const p of proofs) expect(p.outcome, p.artifactId).toBe(p.artifactId.includes('vendor-job') ? 'failed' : 'passed');
    expect(ev.filter((x) => x.type === 'copy.checked' && (x as unknown as { copy: { status: string } }).copy.status !== 'ok')).toEqual([]);
    const gate = ev.filter((x) => x.type === 'gate.evaluated').at(-1) as { result: { passed: boolean } } | undefined;
    expect(gate?.result.passed).toBe(true);
  });
});
