/**
 * SQL Server on a Windows target through the remote phases (issue 10):
 * `rubicon upgrade` with target.transport openssh-windows and an
 * engines.mssql section whose databases travel by BACKUP TO URL
 * (engines.mssql.backupToUrl: an azure-blob vault, Azurite over HTTPS),
 * then the engineer's `confirm --crossed`, landing and validation on the
 * rebuilt server's SQL Server.
 *
 * What is real: the composition root, the phases (the Windows plane for
 * the server itself, the network-engine path for SQL Server), the
 * inventory script run by PowerShell 7 as journaled steps with its output
 * checked by sentinel, the mssql engine and its tedious client speaking
 * TDS to two scripted endpoints (test/tds), the azure-blob vault and the
 * URL grants against Azurite, a filesystem vault, the journal, the gate.
 *
 * The stand-in (in place of test/e2e/windows-story.test.ts's namespaced
 * sshd, which costs minutes): the `openssh-windows` transport kind is
 * replaced for this test by a loopback Windows machine (the real scripts
 * run by pwsh on this computer, with test/windows/stand-in's commands on
 * its paths; `reg query … MachineGuid` answered in reg.exe's documented
 * shape). The transport itself is covered by test/machines/openssh-windows.test.ts.
 * The target's SQL Server is reached over TDS from this process as on a
 * real estate, so no byte of the database passes through the transport:
 * the test checks that none passes through this process's vaults either.
 *
 * Outside CI, a missing pwsh or Azurite skips with the reason; in CI it fails.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transports } from '../../src/compose/root.ts';
import type { JournalRecord } from '../../src/core/events.ts';
import { LocalMachine } from '../../src/machines/local.ts';
import type { Command, ExecOptions, ExecResult, StepKey, StepResult } from '../../src/machines/machine.ts';
import type { WindowsMachine } from '../../src/machines/windows/windows-machine.ts';
import { stdinBootstrap, type WindowsScriptName } from '../../src/machines/windows/scripts.ts';
import { confirmCrossed, startRun } from '../../src/run/run.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteMissing, requireAzurite, selfSignedCert, startAzurite, type Azurite } from '../azure/azurite.ts';
import type { Scripted } from '../engines/mssql/fixtures.ts';
import { scripted } from '../engines/mssql/fixtures.ts';
import { checkPwsh, mustRun, PWSH } from '../windows/pwsh.ts';
import { journalOf, removeTempDirs, tempDir } from './helpers.ts';
import { FAKE_STRIPE, scriptCredentials, scriptProvingGround, scriptRebuilt, scriptTarget } from './mssql-url-servers.ts';

const STAND_IN = path.join(import.meta.dirname, '..', 'windows', 'stand-in');
const pwsh = checkPwsh();
const azurite = requireAzurite();
const skip = !mustRun(pwsh) ? pwsh.reason : !azurite ? azuriteMissing() : undefined;

/**
 * A Windows machine on this computer: the Machine contract of a LocalMachine
 * over `/`, plus runScript as the openssh-windows transport runs a script
 * (the stdin bootstrap, `-EncodedCommand`), by pwsh here. `machineGuid` is
 * what `reg query HKLM\SOFTWARE\Microsoft\Cryptography /v MachineGuid`
 * answers, in reg.exe's shape
 * (learn.microsoft.com/windows-server/administration/windows-commands/reg-query).
 */
class LoopbackWindows implements WindowsMachine {
  readonly os = 'windows' as const;
  readonly transport = 'openssh-windows' as const;
  readonly name: string;
  readonly address: string;
  private readonly inner: LocalMachine;
  private readonly machineGuid: string;
  private readonly env: Record<string, string>;
  constructor(name: string, stepsRoot: string, machineGuid: string, env: Record<string, string>) {
    this.name = name;
    this.machineGuid = machineGuid;
    this.env = env;
    this.address = `loopback Windows stand-in (${name})`;
    this.inner = new LocalMachine({ name, root: '/', stepsRoot });
  }
  exec(cmd: Command, o?: ExecOptions): Promise<ExecResult> {
    if (cmd.argv.join(' ') === 'reg query HKLM\\SOFTWARE\\Microsoft\\Cryptography /v MachineGuid') {
      return Promise.resolve({ exitCode: 0, stdout: `\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n    MachineGuid    REG_SZ    ${this.machineGuid}\r\n\r\n`, stderr: '', durationMs: 1 });
    }
    return this.inner.exec({ ...cmd, env: { ...this.env, ...cmd.env } }, o);
  }
  run(step: StepKey, cmd: Command, o?: ExecOptions): Promise<StepResult> {
    return this.inner.run(step, { ...cmd, env: { ...this.env, ...cmd.env } }, o);
  }
  runScript(step: StepKey, name: WindowsScriptName, encodedArgs: string, o?: ExecOptions): Promise<StepResult> {
    const boot = stdinBootstrap(name, encodedArgs);
    return this.run(step, { argv: [PWSH, '-NoProfile', '-NonInteractive', '-EncodedCommand', boot.encodedCommand], input: boot.stdin }, o);
  }
  readSmall(p: string, max: number): Promise<Uint8Array> {
    return this.inner.readSmall(p, max);
  }
  writeSmall(p: string, data: string | Uint8Array, o?: { mode?: number }): Promise<void> {
    return this.inner.writeSmall(p, data, o);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const events = (records: JournalRecord[]) => records.map((r) => r.event);

describe.skipIf(skip)(`SQL Server on a Windows target (openssh-windows, BACKUP TO URL)${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let az: Azurite;
  let target: Scripted;
  let pg: Scripted;
  const restore: (() => void)[] = [];
  const env = { RUBICON_WIN_MSSQL_PW: '', RUBICON_WIN_MSSQL_PG_PW: '', RUBICON_WIN_MSSQL_AZ_KEY: AZURITE_KEY, RUBICON_WIN_MSSQL_KEY_PW: 'Key-Backup-Secret-9!', RUBICON_WINDOWS_STAND_IN: '1' };
  beforeAll(async () => {
    const tls = selfSignedCert(await tempDir('rubicon-winmssql-cert-'));
    process.env.NODE_EXTRA_CA_CERTS = tls.cert;
    az = await startAzurite({ tls });
    target = await scripted();
    pg = await scripted();
    env.RUBICON_WIN_MSSQL_PW = target.config.password;
    env.RUBICON_WIN_MSSQL_PG_PW = pg.config.password;
    Object.assign(process.env, env);
  }, 60_000);
  afterAll(async () => {
    for (const r of restore) r();
    for (const k of Object.keys(env)) delete process.env[k];
    delete process.env.NODE_EXTRA_CA_CERTS;
    await target?.stop();
    await pg?.stop();
    await az?.dispose();
    await removeTempDirs();
  });

  it('captures EHR by BACKUP TO URL and the instance items as scripts, proves them on the proving ground\'s server, scans their drift, and lands and validates them on the rebuilt server after the manual crossing', { timeout: 300_000 }, async () => {
    const dir = await tempDir('rubicon-winmssql-');
    const targetRoot = path.join(dir, 'server', 'D');
    const workDir = path.join(dir, 'server', 'ProgramData', 'Rubicon');
    mkdirSync(targetRoot, { recursive: true });
    const servicesFile = path.join(dir, 'services.json');
    writeFileSync(servicesFile, '[]');
    const standInEnv = { PSModulePath: path.join(STAND_IN, 'modules'), PATH: `${path.join(STAND_IN, 'bin')}:${path.dirname(PWSH)}:${process.env.PATH ?? ''}`, RUBICON_STANDIN_SERVICES: servicesFile };
    // Two host keys: the old server's, and the one the engineer reads from the rebuilt server's console.
    const keyOf = (name: string) => {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, name)]);
      return readFileSync(path.join(dir, `${name}.pub`), 'utf8').split(' ').slice(0, 2).join(' ');
    };
    const knownHosts = path.join(dir, 'known_hosts');
    const rebuiltKnownHosts = path.join(dir, 'known_hosts.rebuilt');
    writeFileSync(knownHosts, `ehr-sql01 ${keyOf('old')}\n`);
    writeFileSync(path.join(dir, 'id'), '');
    const osName = execFileSync(PWSH, ['-NoProfile', '-NonInteractive', '-Command', '[System.Environment]::OSVersion.VersionString'], { encoding: 'utf8' }).trim();
    // The transport kind, for this test: the old server before the crossing, the rebuilt one (new MachineGuid) after.
    restore.push(transports.override('openssh-windows', (s) => {
      const rebuilt = (s.transport as { knownHosts?: string }).knownHosts === rebuiltKnownHosts;
      return new LoopbackWindows(s.name, s.stepsRoot, rebuilt ? '0b7d6c2e-9a41-4f3e-8d15-2c6e4a9b7f10' : '6f9619ff-8b86-d011-b42d-00c04fc964ff', standInEnv);
    }));
    const container = `sql-${Math.random().toString(16).slice(2, 10)}`;
    const blobs = new ContainerClient(`${az.accountUrl}/${container}`, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
    const secrets: string[] = [];
    let crossed = false;
    // The application keeps writing until the freeze: one more patient after the proofs (the freeze's drift scan sees it).
    let patients = 1200;
    scriptCredentials(target.server, secrets);
    scriptCredentials(pg.server, secrets);
    scriptRebuilt(target.server, () => crossed, '16.0.4135.4');
    // The proving ground restores what was captured: the count at the newest BACKUP.
    let backedUp = patients;
    scriptTarget(target.server, blobs, () => patients, () => (backedUp = patients));
    scriptProvingGround(pg.server, () => backedUp);
    const conn = (s: Scripted, pw: string) => `{server: 127.0.0.1, port: ${s.config.port}, user: rubicon, passwordEnv: ${pw}, encrypt: false, trustServerCertificate: true, requestTimeoutSeconds: 10}`;
    const why = (rule: string, item: string) => `  - {rule: ${rule}, item: '${item}', by: test, reason: "see the test: applied at landing only, or not on a remote target yet (docs/mssql.md)"}`;
    const runbook = path.join(dir, 'runbook.yaml');
    writeFileSync(
      runbook,
      `version: 1
name: ehr-upgrade-windows-sql
target:
  name: ehr-sql01
  root: ${targetRoot}
  image: Windows Server 2025 Datacenter
  transport: { kind: openssh-windows, host: ehr-sql01, user: rubicon, identityFile: ${path.join(dir, 'id')}, knownHosts: ${knownHosts}, powershell: pwsh }
  workDir: ${workDir}
infra:
  kind: manual
  currentImage: Windows Server 2019 Datacenter
  rebuilt: { osRelease: "${osName}", knownHosts: ${rebuiltKnownHosts} }
  rollback: { description: "hypervisor checkpoint ehr-sql01-pre-upgrade" }
declared:
  databases:
    - {name: EHR, engine: mssql}
# On a Windows target folders come from the declared ones and the inventory's references (none here).
discovery:
  roots: [EHR]
methods:
  folders: []   # this server's data is its SQL Server's; a folder the inventory finds would have no method, and the gate would refuse it
  databases:
    mssql: [mssql-native-url]
vaults:
  - { name: nas, kind: filesystem, path: ${path.join(dir, 'vaults', 'nas')} }
  - { name: sqlbak, kind: azure-blob, accountUrl: ${az.accountUrl}, container: ${container}, credential: { kind: shared-key, accountName: ${AZURITE_ACCOUNT}, keyEnv: RUBICON_WIN_MSSQL_AZ_KEY } }
engines:
  mssql:
    connection: ${conn(target, 'RUBICON_WIN_MSSQL_PW')}
    provingGround: ${conn(pg, 'RUBICON_WIN_MSSQL_PG_PW')}
    backupToUrl: sqlbak
    backupDirectory: 'C:\\ProgramData\\Rubicon\\mssql'
    keyBackupPasswordEnv: RUBICON_WIN_MSSQL_KEY_PW
    landingServer: { productVersion: 16.0.4135.4, edition: Standard Edition (64-bit), engineEdition: 2 }
policy: { minIndependentMethods: 1, minVaults: 1 }
overrides:
  - { rule: policy.not-looser, item: minIndependentMethods, reason: "one SQL Server method (BACKUP TO URL) in this test", by: test }
  - { rule: policy.not-looser, item: minVaults, reason: "the stripes are in one azure-blob vault", by: test }
  - { rule: coverage.complete, item: gate, reason: "no volume listing on a Windows target yet", by: test }
${[
  why('database.independent-methods', 'database:mssql:EHR'),
  why('item.proven', 'instance-object:mssql:configuration:EHR-SQL01'),
  why('item.proven', 'instance-object:mssql:trace-flags:EHR-SQL01'),
  why('item.proven', 'instance-object:mssql:instance:EHR-SQL01'),
  why('item.captured', 'instance-object:mssql:service-master-key:EHR-SQL01'),
  why('item.proven', 'instance-object:mssql:service-master-key:EHR-SQL01'),
  why('secrets.captured', 'instance-object:mssql:service-master-key:EHR-SQL01'),
].join('\n')}
`,
    );
    const stateDir = path.join(dir, 'state');
    const up = await startRun('upgrade', runbook, {
      stateDir,
      onEvent: () => {},
      confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }),
      hooks: { afterPhase: async (phase) => { if (phase === 'prove') patients = 1201; } },
    });
    const records = await journalOf(stateDir, up.runId);
    const ev = events(records);
    const gate = ev.flatMap((e) => (e.type === 'gate.evaluated' ? [e.result] : [])).at(-1);
    expect(up.outcome, JSON.stringify({ error: up.error, failed: gate?.results.filter((r) => r.status === 'fail') })).toBe('waiting');

    // Discovery: the server by the inventory script (a journaled step), SQL Server's items from its instance over TDS.
    const steps = ev.flatMap((e) => (e.type === 'step.started' ? [{ id: e.stepId, what: e.what, machine: e.machine }] : []));
    expect(steps.find((s) => s.id.endsWith('/discover/inventory'))).toMatchObject({ what: 'inventory of ehr-sql01', machine: 'ehr-sql01' });
    const items = ev.flatMap((e) => (e.type === 'item.discovered' ? [e.item.id] : []));
    expect(items).toEqual(expect.arrayContaining(['database:mssql:EHR', 'instance-object:mssql:login:ehr_app', 'instance-object:mssql:job:EHR Nightly Backup', 'instance-object:mssql:service-master-key:EHR-SQL01']));
    expect(ev.find((e) => e.type === 'item.discovered' && e.item.id === 'database:mssql:EHR')).toMatchObject({ item: { methods: ['mssql-native-url'] } });

    // Capture and final capture: BACKUP TO URL sent to the target's server; the stripes went straight into the container.
    const artifacts = ev.flatMap((e) => (e.type === 'artifact.captured' ? [e.artifact] : []));
    const ehr = artifacts.filter((a) => a.itemId === 'database:mssql:EHR');
    expect(ehr.map((a) => `${a.phase}:${a.method}:${(a.vaults ?? []).join(',')}`)).toEqual(['capture:mssql-native-url:sqlbak', 'final-capture:mssql-native-url:sqlbak']);
    expect(target.server.find(/^BACKUP DATABASE \[EHR\] TO URL/).length).toBe(2);
    const stripes: string[] = [];
    for await (const b of blobs.listBlobsFlat()) if (/\/mssql\/.*stripe-\d+-of-\d+\.bak$/.test(b.name)) stripes.push(b.name);
    expect(stripes.length).toBe(2);
    // No stripe's bytes in the filesystem vault (the sidecar and the scripts are small documents made here).
    const nasObjects = readdirSync(path.join(dir, 'vaults', 'nas'), { recursive: true, withFileTypes: true }).filter((d) => d.isFile());
    for (const f of nasObjects) expect(readFileSync(path.join(f.parentPath, f.name), 'utf8').includes(FAKE_STRIPE), f.name).toBe(false);
    // The instance items were captured as scripts into every vault (both count a copy).
    const login = artifacts.find((a) => a.itemId === 'instance-object:mssql:login:ehr_app' && a.phase === 'capture');
    expect(login).toMatchObject({ method: 'instance-objects' });
    const copies = (id: string) => ev.flatMap((e) => (e.type === 'copy.checked' && e.copy.artifactId === id ? [`${e.copy.vault}:${e.copy.status}`] : [])).sort();
    expect(copies(login!.id)).toEqual(['nas:ok', 'sqlbak:ok']);
    expect(copies(ehr[0]!.id)).toEqual(['sqlbak:ok']);
    // What needs the server's backup folder (BACKUP SERVICE MASTER KEY TO FILE) fails typed, named, and is on record.
    const failures = ev.flatMap((e) => (e.type === 'capture.failed' ? [e] : []));
    expect(failures.map((f) => `${f.itemId}:${f.code}`)).toEqual(['instance-object:mssql:service-master-key:EHR-SQL01:PRECONDITION_FAILED']);
    expect(failures[0]!.message).toContain('whose files this computer cannot read');

    // Proof: RESTORE FROM URL on the proving ground's server only, through a read grant; the proof passed with the fingerprint.
    const proofs = ev.flatMap((e) => (e.type === 'proof.recorded' ? [e.proof] : []));
    const ehrProof = proofs.find((p) => p.artifactId === ehr[0]!.id);
    expect(ehrProof?.outcome, JSON.stringify(ehrProof?.checks)).toBe('passed');
    expect(ehrProof?.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['url-stripes', 'restore', 'integrity', 'fingerprint-source']));
    expect(String(pg.server.find(/^RESTORE DATABASE/)[0]?.params.file1)).toMatch(new RegExp(`^${az.accountUrl}/${container}/.*stripe-01-of-01\\.bak$`));
    expect(proofs.find((p) => p.artifactId === login!.id)?.outcome).toBe('passed');
    expect(target.server.find(/^RESTORE DATABASE|^DBCC CHECKDB/)).toEqual([]);
    expect(pg.server.find(/^BACKUP/)).toEqual([]);

    // Drift of the SQL Server items was scanned (fingerprints, scripts again), not left unknown; preflight before capture and before the gate.
    for (const id of ['database:mssql:EHR', 'instance-object:mssql:login:ehr_app', 'instance-object:mssql:job:EHR Nightly Backup']) {
      expect(ev.some((e) => e.type === 'drift.scanned' && e.drift.itemId === id && e.drift.stage === 'pre-gate' && e.drift.changes.length === 0), id).toBe(true);
    }
    expect(ev.flatMap((e) => (e.type === 'preflight.checked' ? [`${e.preflight.engine}:${e.preflight.stage}:${e.preflight.checks.map((c) => c.status).join(',')}`] : []))).toEqual(['mssql:capture:passed', 'mssql:pre-gate:passed']);
    expect(gate?.passed, JSON.stringify(gate?.results.filter((r) => r.status === 'fail'))).toBe(true);

    // The crossing: the engineer rebuilt the server (a new host key, a new MachineGuid); SQL Server there is empty.
    writeFileSync(rebuiltKnownHosts, `ehr-sql01 ${keyOf('new')}\n`);
    crossed = true;
    const landingStarts = target.server.statements().length;
    const done = await confirmCrossed(up.runId, 'Jane Engineer', { stateDir, onEvent: () => {}, confirm: async () => ({ confirmed: true, by: 'flag', who: 'test' }) });
    const after = events(await journalOf(stateDir, up.runId));
    expect(after.find((e) => e.type === 'rebuild.verified')).toMatchObject({ machine: 'ehr-sql01', machineIdChanged: true, hostKeyChanged: true });
    const landed = after.flatMap((e) => (e.type === 'landing.validated' ? [e] : []));
    const byItem = (id: string) => landed.find((l) => l.itemId === id);
    expect(byItem('database:mssql:EHR')?.checks.map((c) => `${c.name}:${c.status}`)).toEqual(['database-settings:passed', 'smoke:passed', 'fingerprint-proof:passed']);
    expect(byItem('instance-object:mssql:login:ehr_app')?.outcome).toBe('passed');
    expect(byItem('instance-object:mssql:job:EHR Nightly Backup')?.outcome).toBe('passed');
    // What the rebuilt server received: the login script before RESTORE FROM URL (through a new read grant), the job after it.
    const sent = target.server.statements().slice(landingStarts);
    const at = (re: RegExp) => sent.findIndex((x) => re.test(x));
    expect(at(/^-- Rubicon instance-objects: logins/)).toBeGreaterThanOrEqual(0);
    expect(at(/^-- Rubicon instance-objects: logins/)).toBeLessThan(at(/^RESTORE DATABASE \[EHR\] FROM URL/));
    expect(at(/^RESTORE DATABASE \[EHR\] FROM URL/)).toBeLessThan(at(/^-- Rubicon instance-objects: SQL Agent jobs/));
    // The service master key had no artifact: it did not land, and the run says so instead of claiming it landed.
    expect(byItem('instance-object:mssql:service-master-key:EHR-SQL01')?.outcome).toBe('failed');
    expect(done.outcome).not.toBe('landed');
    // No SAS in the journal.
    const journal = JSON.stringify(await journalOf(stateDir, up.runId));
    expect(secrets.length).toBeGreaterThanOrEqual(3);
    for (const sas of secrets) expect(journal).not.toContain(new URLSearchParams(sas).get('sig')!);
    expect(journal).not.toContain('Key-Backup-Secret-9!');
  });
});
