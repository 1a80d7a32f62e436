import { RubiconError } from '../core/errors.ts';
import type { ManifestEntry } from '../core/types.ts';
import { relativePathProblem } from '../core/paths.ts';
import type { Command, ExecOptions, Machine, StepResult } from '../machines/machine.ts';
import type { RunOnMachine } from '../machines/tree.ts';
import { safeToolLines } from '../run/steps.ts';
import { indexFileName } from './filesystem.ts';
import { indexEntrySchema } from './index-entry.ts';
import type { ArtifactIndexEntry, ObjectCheck, VaultStepRun } from './vault.ts';

/**
 * What the two tool vaults (sftp with rsync, restic) share: step attempts,
 * the names of artifacts on the vault host, and turning a tool's failure
 * into a typed error that names the machine, the vault host and the fix.
 */

/** The folder / tag name of an artifact on the vault host: indexFileName without `.json` (filesystem.ts). Pure. */
export function artifactName(artifactId: string): string {
  return indexFileName(artifactId).slice(0, -'.json'.length);
}

/**
 * Runs a step with attempts: `<baseId>.1`, `<baseId>.2`, … . A result that an
 * earlier process recorded (re-attached) is used only when `accept(r)` says
 * so; otherwise the next attempt runs afresh. So a redo after a failure (a
 * full disk, since freed) really runs the tool again, a check run twice
 * really reads twice, and a step that finished well before a crash is
 * picked up again on resume. Each call runs at most one fresh attempt.
 */
export async function runAttempt(
  run: VaultStepRun,
  machine: Machine,
  baseId: string,
  cmd: Command,
  what: string,
  o: ExecOptions & { accept: (r: StepResult) => boolean },
): Promise<StepResult> {
  const { accept, ...options } = o;
  for (let n = 1; n <= 1000; n++) {
    const r = await run(machine, { id: `${baseId}.${n}`, idempotent: true }, cmd, what, options);
    if (!r.reattached || accept(r)) return r;
  }
  throw new RubiconError('INTERNAL', `step ${baseId} on ${machine.name} has been tried 1000 times in this run`);
}

/** src/machines/tree.ts's step shape on top of runAttempt. */
export function treeRunner(run: VaultStepRun, what: string, accept: (r: StepResult) => boolean): RunOnMachine {
  return (machine, key, argv, input, options) => runAttempt(run, machine, key.id, { argv, ...(input !== undefined ? { input } : {}) }, what, { accept, ...options });
}

/** Refuses manifest entries that are not safe relative paths, or a file list that is not exactly their paths. */
export function checkEntries(vault: string, artifactId: string, entries: readonly ManifestEntry[], files: readonly string[]): void {
  if (files.length !== entries.length || files.some((f, i) => f !== entries[i]?.path)) {
    throw new RubiconError('INTERNAL', `vault '${vault}': the file list of artifact ${artifactId} is not exactly its manifest's paths`);
  }
  for (const e of entries) {
    const problem = relativePathProblem(e.path);
    if (problem) throw new RubiconError('INTERNAL', `vault '${vault}': manifest path "${e.path}" of artifact ${artifactId} ${problem}`);
  }
}

export function totalBytes(entries: readonly ManifestEntry[]): number {
  return entries.reduce((n, e) => n + e.size, 0);
}

/** "a, b, c (and 4 more)". Pure. */
export function firstOf(paths: readonly string[], n = 3): string {
  return paths.slice(0, n).join(', ') + (paths.length > n ? ` (and ${paths.length - n} more)` : '');
}

/** Each tool's version per machine object, for every vault object of the process (it does not change during a run). */
const toolVersions = { restic: new WeakMap<Machine, Promise<string>>(), rsync: new WeakMap<Machine, Promise<string>>() };

/**
 * The version line of `tool` on `on` ("restic 0.14.0", "rsync 3.2.7"; the
 * bare name when the output has none), asked once per machine object and
 * tool (`restic version` / `rsync --version`); a failed ask is asked again
 * next time. TOOL_MISSING (exit 127) names the machine, the vault that
 * needs the tool and the Debian package. Read-only on the machine.
 */
export function toolVersion(on: Machine, tool: 'restic' | 'rsync', vault: string): Promise<string> {
  const cache = toolVersions[tool];
  let p = cache.get(on);
  if (!p) {
    p = askToolVersion(on, tool, vault);
    cache.set(on, p);
    p.catch(() => cache.delete(on));
  }
  return p;
}

async function askToolVersion(on: Machine, tool: 'restic' | 'rsync', vault: string): Promise<string> {
  const r = await on.exec({ argv: tool === 'restic' ? ['restic', 'version'] : ['rsync', '--version'] });
  if (r.exitCode === 127) {
    throw new RubiconError('TOOL_MISSING', `${tool} is not installed on ${on.name} (${on.address}), which needs it for vault '${vault}'`, {
      hint: `install ${tool} on ${on.name} (Debian: apt-get install ${tool}), then resume the run`,
      details: { machine: on.name, tool },
    });
  }
  const v = (tool === 'restic' ? /restic (\d+\.\d+\.\d+\S*)/ : /rsync\s+version\s+(\S+)/).exec(r.stdout)?.[1];
  return v ? `${tool} ${v}` : tool;
}

export interface FailureContext {
  vault: string;
  tool: 'rsync' | 'restic';
  /** Where the tool ran. */
  machine: Machine;
  /** The vault host (for NO_SPACE, host keys, refused keys). */
  vaultHost: Machine;
  /** `user@host:port` of the vault host as the machine reaches it. */
  vaultAddress: string;
  /** The vault's folder on the vault host. */
  vaultPath: string;
  exitCode: number;
  stderr: string;
  /** What was being done, e.g. "copying artifact X". */
  what: string;
}

/**
 * A typed error for the failures any ssh-based tool shares, or undefined
 * when the output does not say which (the caller names the tool's own
 * failure). `unspecific`: the tool failed in a way a full vault disk can
 * cause without saying so (sftp has no "no space" status: OpenSSH's
 * sftp-server sends SSH_FX_FAILURE); then the vault host's free space is
 * looked at. Never includes more of the tool's output than its known
 * message shapes.
 */
export async function sharedToolFailure(c: FailureContext, o: { unspecific?: boolean } = {}): Promise<RubiconError | undefined> {
  const s = c.stderr;
  const onMachine = `${c.machine.name} (${c.machine.address})`;
  const host = `${c.vaultHost.name} (${c.vaultAddress})`;
  if (c.exitCode === 127 || new RegExp(`^rubicon-step: \\d+: ${c.tool}: not found`, 'm').test(s)) {
    return new RubiconError('TOOL_MISSING', `${c.tool} is not installed on ${onMachine}, which needs it for vault '${c.vault}'`, {
      hint: `install ${c.tool} on ${c.machine.name} (Debian: apt-get install ${c.tool}), then resume the run`,
      details: { machine: c.machine.name, tool: c.tool },
    });
  }
  if (new RegExp(`(?:sh|bash): (?:\\d+: )?(?:line \\d+: )?${c.tool}: (?:command )?not found`).test(s)) {
    return new RubiconError('TOOL_MISSING', `${c.tool} is not installed on the host of vault '${c.vault}', ${host}`, {
      hint: `install ${c.tool} on ${c.vaultHost.name} (Debian: apt-get install ${c.tool}), then resume the run`,
      details: { machine: c.vaultHost.name, tool: c.tool },
    });
  }
  if (/No space left on device|ENOSPC|Disk quota exceeded/i.test(s)) {
    // rsync tags the side that failed; the receiver (and its generator) runs on the vault host. Otherwise look at the
    // vault host's free space (not conclusive after the fact: a tool removes its temp file when it fails).
    const remote = /\[(?:receiver|generator)\][^\n]*(?:No space left on device|Disk quota exceeded)/i.test(s);
    if (remote || c.machine === c.vaultHost || (await vaultHostFull(c.vaultHost, c.vaultPath))) return noSpace(c);
    return new RubiconError('NO_SPACE', `${onMachine} ran out of space while ${c.what} for vault '${c.vault}' (the vault host still has space)`, {
      hint: `free space on ${c.machine.name} (its temp folder, the tool's cache under the home folder, Rubicon's work folder), then resume the run`,
      details: { vault: c.vault, machine: c.machine.name },
    });
  }
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|No \S+ host key is known|Host key for \S+ has changed/i.test(s)) {
    return new RubiconError('MACHINE_HOST_KEY', `${onMachine} does not recognise the host key of ${host}, the host of vault '${c.vault}'`, {
      hint: `check the vault host's key out of band and put it into the runbook's known_hosts file for vault '${c.vault}' (vaults[].host.knownHosts); the grant copies that file to ${c.machine.name}`,
      details: { machine: c.machine.name, vaultHost: c.vaultHost.name },
    });
  }
  // ssh's own wording only: a tool's "Permission denied (13)" on a file is not a refused key.
  if (/Permission denied \((?:publickey|password|keyboard-interactive|hostbased|gssapi)[^)]*\)|Permission denied, please try again|Too many authentication failures/i.test(s)) {
    return new RubiconError('GRANT_FAILED', `${host}, the host of vault '${c.vault}', refused the grant key of ${c.machine.name} (expired, revoked, or authorized_keys not read by sshd)`, {
      hint: `resume the run to get a fresh grant; if it keeps failing, check that sshd on ${c.vaultHost.name} reads the authorized_keys file the runbook names (vaults[].host.authorizedKeysFile)`,
      details: { machine: c.machine.name, vaultHost: c.vaultHost.name },
    });
  }
  if (/ssh: connect to host|Connection refused|No route to host|Network is unreachable|Connection timed out|Could not resolve hostname|Name or service not known|Connection closed by \S+ port|kex_exchange_identification/i.test(s)) {
    return new RubiconError('MACHINE_UNREACHABLE', `${onMachine} cannot reach ${host}, the host of vault '${c.vault}'`, {
      hint: `check that ${c.machine.name} can reach ${c.vaultAddress} (routing, firewall, sshd up), then resume the run`,
      details: { machine: c.machine.name, vaultHost: c.vaultHost.name },
    });
  }
  if (o.unspecific && (await vaultHostFull(c.vaultHost, c.vaultPath))) return noSpace(c);
  return undefined;
}

export function noSpace(c: Pick<FailureContext, 'vault' | 'vaultHost' | 'vaultPath' | 'what'>): RubiconError {
  return new RubiconError('NO_SPACE', `the host of vault '${c.vault}', ${c.vaultHost.name} (${c.vaultHost.address}), has no space left in ${c.vaultPath} (${c.what})`, {
    hint: `free space on ${c.vaultHost.name} where ${c.vaultPath} lives (or give the vault a bigger disk), then resume the run: it redoes this copy`,
    details: { vault: c.vault, machine: c.vaultHost.name },
  });
}

/**
 * Whether the filesystem of `dir` on the vault host is (nearly) full: used
 * when a tool reports a failure that does not say why (sftp has no
 * "no space" status: OpenSSH's sftp-server sends SSH_FX_FAILURE).
 */
export async function vaultHostFull(vaultHost: Machine, dir: string): Promise<boolean> {
  const r = await vaultHost.exec({ argv: ['df', '-Pk', '--', dir] }).catch(() => undefined);
  if (!r || r.exitCode !== 0) return false;
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  const cols = line.trim().split(/\s+/);
  const avail = Number(cols[3]);
  const pct = Number((cols[4] ?? '').replace('%', ''));
  return (Number.isFinite(avail) && avail < 1024) || pct >= 100;
}

/** Known message shapes of the tools, for safeToolLines (nothing else of their output reaches a message). */
export const RSYNC_SHAPES: readonly RegExp[] = [/^rsync( error)?: /, /^rsync: \[(sender|receiver|generator)\]/, /^rrsync error: /, /^ssh: /];
export const RESTIC_SHAPES: readonly RegExp[] = [/^Fatal: /, /^error: /i, /^Save\(/, /^Load\(/, /^ssh: /, /^subprocess ssh: /, /does not exist, skipping$/, /^unable to /];

export function toolLines(stderr: string, shapes: readonly RegExp[]): string {
  const lines = safeToolLines(stderr, shapes);
  return lines.length > 0 ? `: ${lines.join(' | ')}` : '';
}

/** `user@host` for rsync/restic locations (IPv6 literals bracketed). Pure. */
/**
 * Grades a document read back on a vault host from the two lines
 * `stat -c %s` / `sha256sum` (or restic's equivalent) printed: its size
 * against `expectedSize` when known, then its SHA-256 against its name.
 * Pure: the caller ran the command and handled a missing document.
 */
export function gradeDocLines(vault: string, sha256: string, expectedSize: number | undefined, stdout: string, host: string): ObjectCheck {
  const [sizeLine, hashLine] = stdout.trim().split('\n');
  const size = Number(sizeLine);
  if (expectedSize !== undefined && size !== expectedSize) return { status: 'size-invalid', detail: `document ${sha256} in vault '${vault}' has ${size} bytes, expected ${expectedSize}` };
  const actual = (hashLine ?? '').slice(0, 64);
  if (actual !== sha256) return { status: 'checksum-mismatch', detail: `document ${sha256} in vault '${vault}' hashes to ${actual} on ${host}` };
  return { status: 'ok' };
}

export function userAtHost(user: string, host: string): string {
  return `${user}@${host.includes(':') ? `[${host}]` : host}`;
}

/**
 * Whether a stored index entry already says everything `entry` says (the
 * rule of FilesystemVault.putArtifactIndex: the same artifact and manifest,
 * and nothing new to add). Pure.
 */
export function sameIndexEntry(current: ArtifactIndexEntry, entry: ArtifactIndexEntry): boolean {
  const extra = (e: Partial<ArtifactIndexEntry>) => JSON.stringify([e.origin, e.independenceGroup, e.sourceFingerprint]);
  return (
    current.artifactId === entry.artifactId &&
    current.manifestHash === entry.manifestHash &&
    current.runId === entry.runId &&
    current.itemId === entry.itemId &&
    current.method === entry.method &&
    (entry.origin === undefined || extra(current) === extra(entry)) &&
    // A newly signed entry replaces an unsigned or differently signed one.
    (entry.sig === undefined || entry.sig === current.sig)
  );
}

/** The stored form of an index entry (the same document FilesystemVault writes). Throws INTERNAL for an invalid entry. */
export function indexDocument(vault: string, entry: ArtifactIndexEntry): { doc: ArtifactIndexEntry; bytes: Uint8Array } {
  const parsed = indexEntrySchema.safeParse(entry);
  if (!parsed.success) {
    throw new RubiconError(
      'INTERNAL',
      `vault '${vault}': artifact index entry for '${entry.artifactId}' is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  const p = parsed.data;
  const doc: ArtifactIndexEntry = {
    artifactId: p.artifactId,
    runId: p.runId,
    itemId: p.itemId,
    method: p.method,
    manifestHash: p.manifestHash,
    capturedAt: p.capturedAt,
    ...(p.origin ? { origin: p.origin } : {}),
    ...(p.independenceGroup ? { independenceGroup: p.independenceGroup } : {}),
    ...(p.sourceFingerprint ? { sourceFingerprint: p.sourceFingerprint } : {}),
    ...(p.sig !== undefined ? { sig: p.sig } : {}),
    ...(p.keyId !== undefined ? { keyId: p.keyId } : {}),
  };
  return { doc, bytes: Buffer.from(`${JSON.stringify(doc, null, 2)}\n`) };
}

/** Parses a stored index document; VAULT_CORRUPT naming the vault and where it was. */
export function parseIndexDocument(vault: string, where: string, bytes: Uint8Array): ArtifactIndexEntry {
  try {
    return indexEntrySchema.parse(JSON.parse(Buffer.from(bytes).toString('utf8'))) as ArtifactIndexEntry;
  } catch (e) {
    throw new RubiconError('VAULT_CORRUPT', `vault '${vault}': artifact index document ${where} is not a valid index entry; move it aside and re-run the capture of that artifact`, {
      cause: e,
      details: { vault, file: where },
    });
  }
}

/** Newest first by capturedAt, then by artifact id (FilesystemVault.listArtifacts' order). Pure. */
export function sortIndex(entries: ArtifactIndexEntry[]): ArtifactIndexEntry[] {
  return entries.sort((a, b) =>
    a.capturedAt !== b.capturedAt ? (a.capturedAt < b.capturedAt ? 1 : -1) : a.artifactId < b.artifactId ? -1 : a.artifactId > b.artifactId ? 1 : 0,
  );
}
