import path from 'node:path';
import type { DatabaseEngine, RemoteDatabaseEngine } from '../engines/engine.ts';
import { lazyMssqlEngine } from '../engines/mssql/lazy.ts';
import { sqliteEngine } from '../engines/sqlite/index.ts';
import type { InfraDriver } from '../infra/driver.ts';
import { ManualDriver } from '../infra/manual.ts';
import { SandboxDriver } from '../infra/sandbox.ts';
import { LocalMachine } from '../machines/local.ts';
import type { Machine } from '../machines/machine.ts';
import { SshMachine } from '../machines/ssh.ts';
import { azureRunCommandFromSettings, openSshWindowsFromSettings } from '../machines/windows/factories.ts';
import { FOLDER_METHODS, type FolderMethod } from '../methods/folders.ts';
import type { Runbook, TransportSettings, VaultSettings } from '../runbook/load.ts';
import { mssqlEngineOptions } from '../runbook/mssql.ts';
import type { UrlGrantEvent } from '../engines/mssql/url-grant.ts';
import { FilesystemVault } from '../vaults/filesystem.ts';
import { readVaultKey } from '../vaults/sealed.ts';
import { createResticVault } from '../vaults/restic.ts';
import { createSftpVault } from '../vaults/sftp.ts';
import { remoteSqliteEngine } from '../engines/sqlite/remote.ts';
import type { Vault } from '../vaults/vault.ts';
import { Registry } from './registry.ts';
import type { TargetPlane } from '../run/plane.ts';
import { posixPlane } from '../run/plane-posix.ts';
import { windowsPlane } from '../run/windows.ts';

/**
 * The composition root: the only module that names concrete adapters. The
 * runbook selects each by its `kind` through one registry per seam.
 * Everything else sees the interfaces (Machine, Vault, DatabaseEngine,
 * InfraDriver, FolderMethod).
 */

export interface MachineSpec {
  name: string;
  transport: TransportSettings;
  /** Local transport: the machine's root folder on this computer. */
  localRoot: string;
  /** Absolute folder on the machine for this run's step folders. */
  stepsRoot: string;
}

type TransportFactory = (spec: MachineSpec) => Machine;
/** A vault that must read its facts first (azure-blob: the container's WORM policy) returns a promise. */
type VaultFactory = (settings: VaultSettings, deps: VaultDeps) => Vault | Promise<Vault>;
type InfraFactory = (rb: Runbook, deps: InfraDeps) => InfraDriver | Promise<InfraDriver>;

export interface VaultDeps {
  runId: string;
  /** Creates the vault host's machine (ssh). */
  machine: (name: string, transport: TransportSettings) => Machine;
  /** The target's root, to decide whether a local folder is off the target. */
  targetRoot: string;
  targetIsLocal: boolean;
  /** Rubicon's work folder on a machine (grant files go under it). */
  workDirOf: (m: Machine) => string;
}

export interface InfraDeps {
  runId: string;
  target: Machine;
  provingGround: Machine;
  log?: (level: 'info' | 'warn', message: string) => void;
}

export const transports = new Registry<TransportFactory>('transport')
  .register('local', (s) => new LocalMachine({ name: s.name, root: s.localRoot, stepsRoot: s.stepsRoot }))
  .register('ssh', (s) => {
    const t = s.transport as Extract<TransportSettings, { kind: 'ssh' }>;
    return new SshMachine({
      name: s.name,
      host: t.host,
      port: t.port,
      user: t.user,
      identityFile: t.identityFile,
      knownHostsFile: t.knownHosts,
      connectTimeoutSeconds: t.connectTimeoutSeconds,
      commandTimeoutSeconds: t.commandTimeoutSeconds,
      stepsRoot: s.stepsRoot,
      ...(t.proxyJump ? { proxyJump: t.proxyJump } : {}),
    });
  })
  .register('openssh-windows', (s) => openSshWindowsFromSettings(s.name, s.transport, s.stepsRoot))
  .register('azure-run-command', (s) => azureRunCommandFromSettings(s.name, s.transport, s.stepsRoot));

const inside = (child: string, parent: string) => {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
};

export const vaultKinds = new Registry<VaultFactory>('vault kind').register('filesystem', (v, deps) => {
  const s = v as Extract<VaultSettings, { kind: 'filesystem' }>;
  // Off the target is a fact about where the folder is, not a runbook flag.
  const offTarget = !(deps.targetIsLocal && inside(s.path, deps.targetRoot));
  const encryption = s.encryption ? { encryption: { key: readVaultKey(s.encryption, s.name) } } : {};
  return new FilesystemVault({ name: s.name, kind: 'filesystem', location: s.path, offTarget, immutable: false, encrypted: s.encryption !== undefined }, encryption);
});

vaultKinds
  .register('sftp', (v, deps) => {
    const s = v as Extract<VaultSettings, { kind: 'sftp' }>;
    return createSftpVault(s, { vaultHost: deps.machine(s.name, s.host), runId: deps.runId, workDirOf: deps.workDirOf });
  })
  .register('restic', (v, deps) => {
    const s = v as Extract<VaultSettings, { kind: 'restic' }>;
    return createResticVault(s, { vaultHost: deps.machine(s.name, s.host), runId: deps.runId, workDirOf: deps.workDirOf });
  })
  // Capabilities (immutability, encryption) are read from the container before the run records the vault.
  // Loaded on demand: the Azure SDK is about half a second of CPU at start-up, in every run that has no such vault.
  .register('azure-blob', async (v) => {
    const { AzureBlobVault } = await import('../vaults/azure-blob.ts');
    return new AzureBlobVault(v as Extract<VaultSettings, { kind: 'azure-blob' }>).open();
  });

export const infraKinds = new Registry<InfraFactory>('infra kind')
  .register('sandbox', (rb) => {
    const infra = rb.infra as Extract<Runbook['infra'], { kind: 'sandbox' }>;
    return new SandboxDriver({
      targetRoot: rb.target.root,
      targetName: rb.target.name,
      provingGroundRoot: rb.provingGround.root,
      rollbackRoot: infra.rollback,
      currentImage: infra.currentImage,
      plannedImage: rb.target.image,
    });
  })
  .register('manual', (rb, deps) => new ManualDriver({ runbook: rb, runId: deps.runId, target: deps.target, provingGround: deps.provingGround }))
  .register('pulumi-azure', pulumiAzureInfraKind());

/**
 * The `pulumi-azure` infra factory. `ports` replaces the real Pulumi stack,
 * ARM and machine ports (tests: `infraKinds.override('pulumi-azure',
 * pulumiAzureInfraKind({ stack, arm, machines }))`); the wiring is the same.
 * The driver's notes (every ARM lock lifted and restored, disarming) go to
 * `deps.log`, i.e. the journal, with their level.
 */
export function pulumiAzureInfraKind(ports: import('../infra/azure/factory.ts').PulumiAzureInfraDeps = {}): InfraFactory {
  return async (rb, deps) => {
    const infra = rb.infra as Extract<Runbook['infra'], { kind: 'pulumi-azure' }>;
    // Loaded on demand: the Pulumi SDK is large and only this kind needs it.
    const { createPulumiAzureInfra } = await import('../infra/azure/factory.ts');
    return createPulumiAzureInfra(infra.azure, { ...ports, ...(deps.log ? { log: deps.log } : {}) });
  };
}

/** The OS-specific part of the remote phases (src/run/plane.ts), by the target machine's `os`. */
export const targetPlanes = new Registry<TargetPlane>('target plane').register('linux', posixPlane).register('windows', windowsPlane);

export const folderMethods = new Registry<FolderMethod>('folder method');
for (const m of FOLDER_METHODS) folderMethods.register(m.name, m);

/** Local database engines (this process opens the files) and remote ones (the engine's CLI runs on the machine). */
export const remoteEngines: Record<string, RemoteDatabaseEngine> = { sqlite: remoteSqliteEngine };

/**
 * The database engines a runbook uses. Also called inside the isolated
 * proving process (src/run/prove-worker.ts), so it must build engines from
 * the runbook alone (and the environment, which holds the passwords the
 * runbook names; the proving process inherits it).
 *
 * sqlite is always there; mssql when the runbook has an engines.mssql
 * section (loaded on first use). Throws RUNBOOK_INVALID naming the
 * variable when a password variable is no longer set (e.g. resume from
 * another shell). `log` receives the engines' plain-words messages,
 * `onGrant` the grants an engine issues itself (SQL Server's URL grants:
 * grant.issued / grant.revoked for the journal, never a secret).
 */
export function createEngines(
  runbook: Runbook,
  options: { env?: NodeJS.ProcessEnv; log?: (level: 'info' | 'warn', message: string) => void; onGrant?: (e: UrlGrantEvent) => void } = {},
): Record<string, DatabaseEngine> {
  const engines: Record<string, DatabaseEngine> = { sqlite: sqliteEngine };
  const mssql = runbook.engines?.mssql;
  if (mssql) {
    // mssql-native-url: the azure-blob vault the runbook names, opened on first use (the load checked it is one).
    const urlVault = mssql.backupToUrl ? runbook.vaults.find((v) => v.name === mssql.backupToUrl) : undefined;
    const backupToUrl = urlVault?.kind === 'azure-blob' ? { backupToUrl: { vault: async () => new (await import('../vaults/azure-blob.ts')).AzureBlobVault(urlVault, { env: options.env ?? process.env }).open() } } : {};
    engines.mssql = lazyMssqlEngine(mssqlEngineOptions(mssql, options.env ?? process.env, { ...(options.log ? { log: options.log } : {}), ...(options.onGrant ? { onGrant: options.onGrant } : {}), ...backupToUrl }));
  }
  return engines;
}

export interface Adapters {
  /** The target as the runbook describes it before the crossing. */
  target: Machine;
  /**
   * The target after a manual crossing: the same address, checked against
   * the rebuilt server's host key (infra.rebuilt.knownHosts). The same
   * machine object for the sandbox.
   */
  rebuiltTarget: Machine;
  provingGround: Machine;
  vaults: Vault[];
  engines: Record<string, DatabaseEngine>;
  remoteEngines: Record<string, RemoteDatabaseEngine>;
  infra: InfraDriver;
  folderMethods: Registry<FolderMethod>;
  /** How the remote phases act on the target's OS. */
  plane: TargetPlane;
}

export interface AdapterInput {
  runId: string;
  /** This run's work folder on this computer. */
  workDir: string;
  log?: (level: 'info' | 'warn', message: string) => void;
  /** The journal's grant.issued / grant.revoked for grants an engine issues (SQL Server's URL grants). */
  onGrant?: (e: UrlGrantEvent) => void;
}

function machineMaker(input: AdapterInput) {
  const stepsOn = (transport: TransportSettings, remoteWorkDir: string) =>
    transport.kind === 'local' ? path.join(input.workDir, 'steps') : path.posix.join(remoteWorkDir, 'steps', input.runId);
  return (name: string, transport: TransportSettings, localRoot: string, remoteWorkDir: string): Machine =>
    transports.get(transport.kind, `${name}.transport.kind`)({ name, transport, localRoot, stepsRoot: stepsOn(transport, remoteWorkDir) });
}

/** The runbook's vaults alone (for `rubicon audit`, which reads them and touches nothing else). */
export async function createVaults(rb: Runbook, input: AdapterInput): Promise<Vault[]> {
  const machine = machineMaker(input);
  return Promise.all(rb.vaults.map((v, i) =>
    vaultKinds.get(v.kind, `vaults[${i}].kind`)(v, {
      runId: input.runId,
      machine: (name, transport) => machine(name, transport, '/', '/var/tmp/rubicon'),
      targetRoot: rb.target.root,
      targetIsLocal: rb.target.transport.kind === 'local',
      workDirOf: (m) => (m.name === 'proving-ground' ? rb.provingGround.workDir || '/var/tmp/rubicon' : rb.target.workDir),
    }),
  ));
}

export async function createAdapters(rb: Runbook, input: AdapterInput): Promise<Adapters> {
  const machine = machineMaker(input);
  const target = machine(rb.target.name, rb.target.transport, rb.target.root, rb.target.workDir);
  const rebuiltTarget =
    rb.infra.kind === 'manual' && (rb.target.transport.kind === 'ssh' || rb.target.transport.kind === 'openssh-windows')
      ? machine(rb.target.name, { ...rb.target.transport, knownHosts: rb.infra.rebuilt.knownHosts }, rb.target.root, rb.target.workDir)
      : target;
  const provingGround = machine('proving-ground', rb.provingGround.transport, rb.provingGround.root, rb.provingGround.workDir || '/var/tmp/rubicon');
  const vaults = await createVaults(rb, input);
  const infra = await infraKinds.get(rb.infra.kind, 'infra.kind')(rb, { runId: input.runId, target, provingGround, ...(input.log ? { log: input.log } : {}) });
  // The driver may adapt the machine it rebuilds (pulumi-azure: Run Command under the VM's lock); the phases and the landing use what it returns.
  const targetMachine = infra.targetMachine ? infra.targetMachine(target) : target;
  const rebuiltMachine = rebuiltTarget === target ? targetMachine : infra.targetMachine ? infra.targetMachine(rebuiltTarget) : rebuiltTarget;
  for (const [i, m] of rb.methods.folders.entries()) folderMethods.get(m, `methods.folders[${i}]`);
  return {
    target: targetMachine,
    rebuiltTarget: rebuiltMachine,
    provingGround,
    vaults,
    engines: createEngines(rb, { ...(input.log ? { log: input.log } : {}), ...(input.onGrant ? { onGrant: input.onGrant } : {}) }),
    // The remote engines run Linux CLIs (sqlite3, find) on the target: none on a Windows target. SQL Server is a network
    // engine (engines: overNetwork), which the remote phases call from here on any target (src/run/network-engines.ts).
    remoteEngines: target.os === 'windows' ? {} : remoteEngines,
    infra,
    folderMethods,
    plane: targetPlanes.get(target.os, 'target.transport.kind'),
  };
}
