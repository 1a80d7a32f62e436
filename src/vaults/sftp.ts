import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { RubiconError, isRubiconError } from '../core/errors.ts';
import type { ManifestEntry, VaultInfo } from '../core/types.ts';
import { isSha256Hex } from '../core/paths.ts';
import type { Machine, StepResult } from '../machines/machine.ts';
import { shQuote } from '../machines/posix.ts';
import { verifyTreeOn } from '../machines/tree.ts';
import type { SmbShareSettings, VaultSettings } from '../runbook/load.ts';
import { assertGrant, issueGrant, revokeGrant, toolArg, type GrantHost } from './grants.ts';
import {
  RSYNC_SHAPES,
  artifactName,
  checkEntries,
  firstOf,
  gradeDocLines,
  indexDocument,
  noSpace,
  parseIndexDocument,
  runAttempt,
  sameIndexEntry,
  sharedToolFailure,
  sortIndex,
  toolLines,
  toolVersion,
  totalBytes,
  treeRunner,
  userAtHost,
} from './remote-tools.ts';
import { runDocKey, runDocName, runDocsFolder } from './run-docs.ts';
import type { ArtifactIndexEntry, Grant, GrantOptions, ObjectCheck, ObjectWriter, RunDocument, ToolVault, VaultCaps, VaultStepRun } from './vault.ts';

/**
 * The `sftp` vault: a folder on an SSH vault host. File trees are mirrored
 * into it by rsync running on the machine where the data is (through a
 * grant); every hash is computed on the vault host (sha256sum), where the
 * copy is; small documents go through the vault host's Machine.
 *
 * Layout on the vault host, under the runbook's `path`:
 *   trees/<name>/            one mirror per artifact (name: artifactName(id),
 *                            the index file name without .json)
 *   trees/<name>.partial/    an ingest in flight; renamed to trees/<name>/
 *                            only after every file's SHA-256 matched
 *   docs/<sha256>            content-addressed documents (manifests)
 *   index/<name>.json        ArtifactIndexEntry documents
 *
 * Grants: a key in the vault user's authorized_keys with `restrict`,
 * `expiry-time` and, when the vault host has rrsync (Debian's rsync package
 * ships /usr/bin/rrsync), `command="rrsync -wo|-ro … <path>/trees"`: the
 * key can then run rsync only, only inside trees/, only in one direction.
 * Without rrsync the key is restricted (no forwarding, no pty) but can run
 * any command as the vault user until it expires: docs/vaults.md.
 *
 * Contracts (besides ToolVault's):
 * - ingest never trusts rsync's exit code: it reads rsync's own report
 *   (--stats: regular files and total size, compared with the manifest),
 *   then hashes every file of the partial copy on the vault host against
 *   the manifest, and only then renames it into place (atomic; a redo after
 *   a crash or a failure replaces its own partial copy and reuses its
 *   unchanged files).
 * - Delta: files unchanged since the base copy (or since an earlier copy
 *   of the same artifact) are hard links into it (--link-dest), so copies
 *   of one item in this vault share inodes: damage to one shared file shows
 *   in every copy that holds it (checkCopy finds it in each).
 * - Documents are written with writeSmall (temp file + rename); nothing is
 *   durable before sync() (`sync -f` of the vault's filesystem).
 */

export type SftpVaultSettings = Extract<VaultSettings, { kind: 'sftp' }>;

export interface ToolVaultDeps {
  /** The vault host, reached with Rubicon's own key (runbook vaults[].host). */
  vaultHost: Machine;
  runId: string;
  /** Rubicon's work folder on a machine (grants go to `<workDir>/grants/<id>/`). */
  workDirOf: (m: Machine) => string;
  /** Clock for grants (tests). */
  now?: () => Date;
}

const DOC_MAX = 512 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
const STEP_OUTPUT_MAX = 64 * 1024 * 1024;

/** rsync's exit codes (rsync(1) EXIT VALUES), for messages. */
const RSYNC_EXIT: Record<number, string> = {
  1: 'syntax or usage error',
  2: 'protocol incompatibility',
  3: 'errors selecting input/output files, dirs',
  5: 'error starting client-server protocol',
  10: 'error in socket I/O',
  11: 'error in file I/O',
  12: 'error in rsync protocol data stream',
  20: 'received SIGUSR1 or SIGINT',
  23: 'partial transfer due to error',
  24: 'partial transfer due to vanished source files',
  30: 'timeout in data send/receive',
  255: 'ssh failed',
};

export interface RsyncStats {
  files: number;
  regularFiles: number;
  transferred: number;
  totalSize: number;
}

/**
 * rsync's own report (`--stats`, with --no-human-readable and LC_ALL=C):
 *   Number of files: 5 (reg: 3, dir: 2)
 *   Number of regular files transferred: 3
 *   Total file size: 20971526 bytes
 * Undefined when the report is not there. Pure.
 */
export function parseRsyncStats(out: string): RsyncStats | undefined {
  const num = (s: string | undefined) => (s === undefined ? undefined : Number(s.replace(/[,.' ]/g, '')));
  const files = /^Number of files: ([\d,.' ]+?)(?: \((.*)\))?$/m.exec(out);
  const total = /^Total file size: ([\d,.' ]+) bytes$/m.exec(out);
  const transferred = /^Number of regular files transferred: ([\d,.' ]+)$/m.exec(out);
  if (!files || !total || !transferred) return undefined;
  const reg = files[2] === undefined ? (num(files[1]) === 0 ? 0 : undefined) : num(/(?:^|, )reg: ([\d,.' ]+)/.exec(files[2])?.[1] ?? '0');
  const r = { files: num(files[1]), regularFiles: reg, transferred: num(transferred[1]), totalSize: num(total[1]) };
  if (Object.values(r).some((v) => v === undefined || !Number.isFinite(v))) return undefined;
  return r as RsyncStats;
}

/** Grades a verification of a tree against its manifest (pgBackRest-style). Pure. */
export function gradeTree(vault: string, where: string, mismatches: readonly { path: string; problem: 'missing' | 'size' | 'hash' | 'extra' }[]): ObjectCheck {
  const of = (p: string) => mismatches.filter((m) => m.problem === p).map((m) => m.path);
  const missing = of('missing');
  const size = of('size');
  const hash = of('hash');
  const extra = of('extra');
  const parts: string[] = [];
  if (missing.length) parts.push(`${missing.length} file(s) missing: ${firstOf(missing)}`);
  if (size.length) parts.push(`${size.length} file(s) with the wrong size: ${firstOf(size)}`);
  if (hash.length) parts.push(`${hash.length} file(s) whose SHA-256 differs from the manifest: ${firstOf(hash)}`);
  if (extra.length) parts.push(`${extra.length} file(s) not in the manifest: ${firstOf(extra)}`);
  const status = missing.length ? 'missing' : size.length ? 'size-invalid' : hash.length ? 'checksum-mismatch' : 'ok';
  if (status === 'ok') return extra.length ? { status, detail: `vault '${vault}', ${where}: every manifest file matches; ${parts.join('; ')}` } : { status };
  return { status, detail: `vault '${vault}', ${where}: ${parts.join('; ')}` };
}

export class SftpVault implements ToolVault {
  readonly tool = 'rsync' as const;
  readonly info: VaultInfo;
  /** immutable: the vault user can change any file; serverHash: sha256sum on the vault host; replaceable: a tree is renamed over. */
  readonly caps: VaultCaps = { immutable: false, serverHash: 'sha256', replaceable: true, offTarget: true, encrypted: false };
  readonly settings: SftpVaultSettings;
  readonly vaultHost: Machine;
  private readonly deps: ToolVaultDeps;
  private readonly root: string;
  private readonly grantHost: GrantHost;
  private layout: Promise<{ rrsync?: string }> | undefined;
  private readonly machines = new Map<string, Machine>();

  constructor(settings: SftpVaultSettings, deps: ToolVaultDeps) {
    if (!settings.path.startsWith('/') || /[\0\r\n]/.test(settings.path)) {
      throw new RubiconError('ARGUMENTS_INVALID', `vault '${settings.name}': path "${settings.path}" must be an absolute folder on the vault host`);
    }
    this.settings = settings;
    this.deps = deps;
    this.vaultHost = deps.vaultHost;
    this.root = settings.path === '/' ? '' : settings.path.replace(/\/+$/, '');
    const h = settings.host;
    this.info = { name: settings.name, kind: 'sftp', location: `sftp://${userAtHost(h.user, h.host)}:${h.port}${settings.path}`, offTarget: true, immutable: false, encrypted: false, tool: 'rsync' };
    this.grantHost = { vault: settings.name, vaultHost: deps.vaultHost, ssh: settings.host, runId: deps.runId, workDirOf: deps.workDirOf, now: deps.now };
  }

  get treesDir(): string {
    return `${this.root}/trees`;
  }

  private docPath(sha256: string): string {
    if (!isSha256Hex(sha256)) throw new RubiconError('ARGUMENTS_INVALID', `vault '${this.info.name}': '${sha256}' is not a lower-case hex SHA-256 digest`);
    return `${this.root}/docs/${sha256}`;
  }

  /** The tree folder name of a locator `trees/<name>`. */
  private treeOf(locator: string): string {
    const m = /^trees\/([A-Za-z0-9._%~-]+)$/.exec(locator);
    if (!m?.[1] || m[1].startsWith('.') || m[1].endsWith('.partial')) throw new RubiconError('INTERNAL', `vault '${this.info.name}': "${locator}" is not a tree locator of an sftp vault`);
    return m[1];
  }

  private where(): string {
    return `${this.vaultHost.name} (${this.vaultHost.address})`;
  }

  /** Creates the layout once per instance and finds rrsync; TOOL_MISSING when the vault host lacks rsync or sha256sum. */
  private ensureLayout(): Promise<{ rrsync?: string }> {
    this.layout ??= (async () => {
      const script = [
        'umask 077',
        'mkdir -p -- "$1/trees" "$1/docs" "$1/index" || exit 46',
        'command -v rsync >/dev/null 2>&1 || { echo "missing rsync"; exit 0; }',
        'command -v sha256sum >/dev/null 2>&1 || { echo "missing sha256sum"; exit 0; }',
        'r=$(command -v rrsync 2>/dev/null) && "$r" -help >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 && echo "rrsync $r"',
        'echo ok',
      ].join('\n');
      const r = await this.vaultHost.exec({ argv: ['sh', '-c', script, 'rubicon', this.root || '/'] });
      if (r.exitCode === 46) {
        if (/No space left/i.test(r.stderr)) throw noSpace({ vault: this.info.name, vaultHost: this.vaultHost, vaultPath: this.settings.path, what: 'creating the vault folders' });
        throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot create ${this.settings.path}/{trees,docs,index} on ${this.where()}: ${r.stderr.trim().slice(0, 200)}`, {
          hint: `check that ${this.settings.host.user} can write ${this.settings.path} on ${this.vaultHost.name}`,
        });
      }
      const missing = /^missing (\S+)/m.exec(r.stdout)?.[1];
      if (missing) {
        throw new RubiconError('TOOL_MISSING', `${missing} is not installed on ${this.where()}, the host of vault '${this.info.name}'`, {
          hint: `install ${missing === 'rsync' ? 'rsync' : 'coreutils'} on ${this.vaultHost.name}, then resume the run`,
          details: { machine: this.vaultHost.name, tool: missing },
        });
      }
      if (!/^ok$/m.test(r.stdout)) throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot prepare ${this.settings.path} on ${this.where()} (exit ${r.exitCode})`);
      const rrsync = /^rrsync (\/\S+)$/m.exec(r.stdout)?.[1];
      return rrsync ? { rrsync } : {};
    })();
    this.layout.catch(() => {
      this.layout = undefined;
    });
    return this.layout;
  }

  // ---- grants ----

  async grant(to: Machine, mode: 'read' | 'write', ttlMs: number, go: GrantOptions = {}): Promise<Grant> {
    const { rrsync } = await this.ensureLayout();
    const h = this.settings.host;
    // rrsync maps a leading "/" to its restricted folder; without it the client names real paths.
    const treesRoot = rrsync ? '/' : `${this.treesDir}/`;
    const forcedCommand = rrsync ? [shQuote(rrsync), mode === 'write' ? '-wo' : '-ro', ...(mode === 'write' ? ['-no-lock', '-no-del'] : []), shQuote(this.treesDir)].join(' ') : undefined;
    const g = await issueGrant(this.grantHost, to, {
      mode,
      ttlMs,
      ...(go.beforeKey ? { beforeKey: go.beforeKey } : {}),
      forcedCommand,
      settings: (_dir, sshArgv) => ({ sshCommand: sshArgv.map(toolArg).join(' '), env: {}, location: `${userAtHost(h.user, h.host)}:${treesRoot}` }),
    });
    this.machines.set(to.name, to);
    return g;
  }

  /** Revokes the key, then removes the grant folder (on `on`, or the machine this instance granted to). Idempotent. */
  async revoke(grant: Grant, on?: Machine): Promise<void> {
    await revokeGrant(this.grantHost, grant, on ?? this.machines.get(grant.machine));
  }

  // ---- file trees ----

  async ingest(
    run: VaultStepRun,
    from: Machine,
    grant: Grant,
    o: { artifactId: string; stepId: string; srcDir: string; files: readonly string[]; entries: readonly ManifestEntry[]; base?: { artifactId: string; locator: string }; signal?: AbortSignal },
  ): Promise<{ locator: string; tool: string; report: { files: number; bytes: number } }> {
    assertGrant(grant, this.info.name, from, 'write', (this.deps.now ?? (() => new Date()))());
    checkEntries(this.info.name, o.artifactId, o.entries, o.files);
    if (!o.srcDir.startsWith('/')) throw new RubiconError('INTERNAL', `vault '${this.info.name}': srcDir ${o.srcDir} is not absolute`);
    await this.ensureLayout();
    const name = artifactName(o.artifactId);
    const version = await this.toolVersion(from);
    const treesRoot = grant.location.slice(grant.location.lastIndexOf(':') + 1);
    // Link candidates: an earlier copy of this artifact (a redo), the base copy (a delta).
    const candidates = [name, ...(o.base ? [this.treeOf(o.base.locator)] : [])];
    const present = await this.vaultHost.exec({ argv: ['sh', '-c', 'cd "$1" || exit 0; shift; for d; do [ -d "$d" ] && printf "%s\\n" "$d"; done; exit 0', 'rubicon', this.treesDir, `${name}.partial`, ...candidates] });
    const found = present.stdout.split('\n');
    const linkDests = candidates.filter((d) => found.includes(d));
    // A finished rsync recorded by an earlier process is reused only while its partial copy is still there to be checked.
    const partialThere = found.includes(`${name}.partial`);
    const argv = [
      'rsync', '-a', '--numeric-ids', '--no-human-readable', '--stats', '--files-from=-', '--from0',
      '-e', grant.sshCommand,
      ...linkDests.map((d) => `--link-dest=${treesRoot}${d}`),
      `${o.srcDir.replace(/\/+$/, '')}/`,
      `${grant.location}${name}.partial/`,
    ];
    const want = { files: o.entries.length, bytes: totalBytes(o.entries) };
    const list = o.files.length === 0 ? '' : `${o.files.join('\0')}\0`;
    const accept = (r: StepResult) => partialThere && r.exitCode === 0 && sameCounts(parseRsyncStats(r.stdout), want);
    const r = await runAttempt(run, from, `${o.stepId}/rsync`, { argv, input: list, env: { LC_ALL: 'C' } }, `rsync of ${o.artifactId} into vault ${this.info.name}`, {
      accept,
      signal: o.signal,
      maxOutputBytes: STEP_OUTPUT_MAX,
    });
    const stats = parseRsyncStats(r.stdout);
    if (r.exitCode !== 0) throw await this.rsyncFailure(from, r, `copying artifact ${o.artifactId}`);
    if (!stats) {
      throw new RubiconError('CAPTURE_FAILED', `rsync on ${from.name} ended with exit 0 but printed no --stats report for artifact ${o.artifactId} (vault '${this.info.name}'); the copy is not trusted`, {
        hint: `check the rsync version on ${from.name} (3.1 or newer prints the report Rubicon reads)`,
      });
    }
    if (!sameCounts(stats, want)) {
      throw new RubiconError('CAPTURE_FAILED', `rsync's own report for artifact ${o.artifactId} on ${from.name} says ${stats.regularFiles} file(s), ${stats.totalSize} bytes; the manifest has ${want.files} file(s), ${want.bytes} bytes: files changed or vanished while they were copied`, {
        hint: 'capture the item again (resume the run); if it keeps changing, freeze the service that writes it first',
      });
    }
    await this.placeTree(run, { artifactId: o.artifactId, stepId: o.stepId, entries: o.entries });
    return { locator: `trees/${name}`, tool: version, report: { files: stats.regularFiles, bytes: stats.totalSize } };
  }

  /**
   * Hashes every file of `trees/<name>.partial` on the vault host against
   * the manifest (step `<stepId>/verify`), removes the files the manifest
   * lacks, and renames it to `trees/<name>` (FINALIZE_SCRIPT): the copy
   * gets its name only after every SHA-256 matched. CAPTURE_FAILED naming
   * the files when one is missing or differs (the partial copy stays for a
   * redo). Idempotent: after a crash anywhere, running it again finishes it
   * (the verify step is journaled: a redo after the rename re-attaches to
   * it, and FINALIZE_SCRIPT accepts a tree already in place).
   */
  private async placeTree(run: VaultStepRun, o: { artifactId: string; stepId: string; entries: readonly ManifestEntry[] }): Promise<void> {
    const name = artifactName(o.artifactId);
    // Hash every file where the copy is, against the manifest, before the copy gets its name.
    const partial = `${this.treesDir}/${name}.partial`;
    const v = await verifyTreeOn(treeRunner(run, `hash of ${o.artifactId} on the host of vault ${this.info.name}`, () => false), this.vaultHost, { id: `${o.stepId}/verify`, idempotent: true }, partial, o.entries).catch((e: unknown) => {
      throw isRubiconError(e) && e.code === 'MACHINE_FAILED' ? new RubiconError('CAPTURE_FAILED', `vault '${this.info.name}': cannot hash the copy of ${o.artifactId} on ${this.where()}: ${e.message}`, { cause: e }) : e;
    });
    const bad = v.mismatches.filter((m) => m.problem !== 'extra');
    if (bad.length > 0) {
      const g = gradeTree(this.info.name, `copy of ${o.artifactId} just written`, bad);
      throw new RubiconError('CAPTURE_FAILED', `${g.detail}; the copy was not put in place`, { hint: 'capture the item again (resume the run): a file changed while it was copied, or the vault host\'s disk is damaged' });
    }
    const extra = v.mismatches.filter((m) => m.problem === 'extra').map((m) => m.path);
    const fin = await this.vaultHost.exec({ argv: ['sh', '-c', FINALIZE_SCRIPT, 'rubicon', `${this.treesDir}/${name}`], input: extra.length ? `${extra.map((p) => `./${p}`).join('\0')}\0` : '' });
    if (fin.exitCode !== 0) {
      if (/No space left/i.test(fin.stderr)) throw noSpace({ vault: this.info.name, vaultHost: this.vaultHost, vaultPath: this.settings.path, what: `putting the copy of ${o.artifactId} in place` });
      throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot put the copy of ${o.artifactId} in place on ${this.where()}: ${fin.stderr.trim().slice(0, 200) || `exit ${fin.exitCode}`}`, {
        hint: `check ${this.treesDir} on ${this.vaultHost.name}, then resume the run`,
      });
    }
  }


  // ---- the vault's folder as an SMB share (robocopy from a Windows target) ----

  /** The runbook's smb section: the vault folder's UNC path and account, or undefined. */
  get smb(): { unc: string; user: string } | undefined {
    const s = this.settings.smb;
    return s ? { unc: s.unc, user: s.user } : undefined;
  }

  /** \\server\share of the vault's UNC path (what the Windows server maps). INTERNAL without an smb section. Pure. */
  smbShareRoot(): string {
    const unc = this.requireSmb().unc;
    const m = /^(\\\\[^\\]+\\[^\\]+)/.exec(unc);
    if (!m?.[1]) throw new RubiconError('INTERNAL', `vault '${this.info.name}': smb.unc ${unc} is not \\\\server\\share`);
    return m[1];
  }

  /** Where robocopy mirrors an artifact into: `<unc>\trees\<name>.partial` (the partial tree ingest uses). Pure. */
  smbPartialOf(artifactId: string): string {
    return `${this.requireSmb().unc}\\trees\\${artifactName(artifactId)}.partial`;
  }

  /** A copy's tree as the Windows server reads it at landing: `<unc>\trees\<name>`. Pure. */
  smbTreeOf(locator: string): string {
    return `${this.requireSmb().unc}\\trees\\${this.treeOf(locator)}`;
  }

  /**
   * The SMB password, read on this machine (the runbook's smb.passwordEnv
   * or passwordFile, one line, trimmed). Never logged; the caller writes it
   * only into a grant's folder with writeSmall. PRECONDITION_FAILED naming
   * where it should be when it is not there.
   */
  async smbPassword(env: NodeJS.ProcessEnv = process.env): Promise<string> {
    const p = this.requireSmb().password;
    const where = 'env' in p ? `the environment variable ${p.env}` : `the file ${p.file}`;
    let raw: string | undefined;
    if ('env' in p) raw = env[p.env];
    else {
      try {
        raw = await readFile(p.file, 'utf8');
      } catch (e) {
        throw new RubiconError('PRECONDITION_FAILED', `vault '${this.info.name}': cannot read the SMB password file ${p.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
          hint: 'create it (mode 0600) with the SMB password on one line, or fix vaults[].smb.passwordFile',
        });
      }
    }
    const pw = (raw ?? '').replace(/\r?\n$/, '');
    if (pw === '') throw new RubiconError('PRECONDITION_FAILED', `vault '${this.info.name}': ${where} is empty or not set; it must hold the password of SMB account ${this.requireSmb().user}`, { hint: 'set it before starting Rubicon' });
    if (/[\r\n\0]/.test(pw)) throw new RubiconError('PRECONDITION_FAILED', `vault '${this.info.name}': the SMB password in ${where} has more than one line`, { hint: 'put the password on one line' });
    return pw;
  }

  /**
   * Adopts a tree another tool wrote into `trees/<name>.partial` through the
   * vault's SMB share (robocopy on a Windows target): hashed on the vault
   * host against the manifest built on the target, then put in place, as
   * ingest does after rsync. Returns the locator `trees/<name>`.
   */
  async adoptTree(run: VaultStepRun, o: { artifactId: string; stepId: string; entries: readonly ManifestEntry[] }): Promise<{ locator: string }> {
    await this.ensureLayout();
    await this.placeTree(run, o);
    return { locator: `trees/${artifactName(o.artifactId)}` };
  }

  private requireSmb(): SmbShareSettings {
    const s = this.settings.smb;
    if (!s) throw new RubiconError('INTERNAL', `vault '${this.info.name}' has no smb section`);
    return s;
  }

  /** rsync's version on `on`, asked once per machine object (TOOL_MISSING is asked again; remote-tools.ts). */
  private toolVersion(on: Machine): Promise<string> {
    return toolVersion(on, 'rsync', this.info.name);
  }

  private async rsyncFailure(on: Machine, r: StepResult, what: string): Promise<RubiconError> {
    const h = this.settings.host;
    const ctx = { vault: this.info.name, tool: 'rsync' as const, machine: on, vaultHost: this.vaultHost, vaultAddress: `${h.user}@${h.host}:${h.port}`, vaultPath: this.settings.path, exitCode: r.exitCode, stderr: r.stderr, what };
    const shared = await sharedToolFailure(ctx, { unspecific: r.exitCode === 11 || r.exitCode === 12 || r.exitCode === 23 });
    if (shared) return shared;
    const lines = toolLines(r.stderr, RSYNC_SHAPES);
    const meaning = RSYNC_EXIT[r.exitCode] ?? 'failed';
    if (/rrsync error/.test(r.stderr)) {
      return new RubiconError('GRANT_FAILED', `the host of vault '${this.info.name}' refused rsync's request from ${on.name} (${what})${lines}`, { hint: 'this is a Rubicon bug if it persists: report the rrsync message' });
    }
    return new RubiconError('CAPTURE_FAILED', `rsync on ${on.name} exited ${r.exitCode} (${meaning}) while ${what} (vault '${this.info.name}')${lines}`, {
      hint: r.exitCode === 24 ? 'files vanished while they were copied: freeze the service that writes them, then resume the run' : `read the step's log beside the run for rsync's full output, then resume the run`,
      details: { exitCode: r.exitCode },
    });
  }

  /**
   * Every file of the copy hashed on the vault host against the manifest,
   * and with `manifestHash` the manifest document too, in ONE step there
   * (a missing tree folder is `missing`).
   */
  async checkCopy(run: VaultStepRun, o: { artifactId: string; locator: string; entries: readonly ManifestEntry[]; stepId: string; srcDir?: string; manifestHash?: string }): Promise<ObjectCheck> {
    let tree: string;
    try {
      tree = this.treeOf(o.locator);
    } catch (e) {
      return { status: 'error', detail: (e as Error).message };
    }
    const dir = `${this.treesDir}/${tree}`;
    try {
      const docRel = o.manifestHash ? `../../docs/${this.docPath(o.manifestHash).slice(this.root.length + '/docs/'.length)}` : undefined;
      const v = await verifyTreeOn(treeRunner(run, `check of ${o.artifactId} in vault ${this.info.name}`, () => false), this.vaultHost, { id: `${o.stepId}/check`, idempotent: true }, dir, o.entries, {
        ...(docRel ? { alsoHash: [docRel] } : {}),
      });
      if (v.dirMissing) return { status: 'missing', detail: `vault '${this.info.name}' has no copy of ${o.artifactId} (expected ${dir} on ${this.where()})` };
      const g = gradeTree(this.info.name, `copy of ${o.artifactId} (${dir})`, v.mismatches);
      if (!docRel) return g;
      const got = v.also?.get(docRel);
      const doc: ObjectCheck =
        got === o.manifestHash
          ? { status: 'ok' }
          : got === undefined
            ? { status: 'missing', detail: `vault '${this.info.name}': the manifest document of ${o.artifactId} (${this.docPath(o.manifestHash!)}) is missing on ${this.where()}` }
            : { status: 'checksum-mismatch', detail: `vault '${this.info.name}': the manifest document of ${o.artifactId} hashes to ${got} on ${this.vaultHost.name}` };
      return worstOf(g, doc);
    } catch (e) {
      return { status: 'error', detail: `vault '${this.info.name}': cannot check the copy of ${o.artifactId} on ${this.where()}: ${isRubiconError(e) ? e.message : String(e)}` };
    }
  }

  async restoreTo(run: VaultStepRun, on: Machine, grant: Grant, o: { artifactId: string; locator: string; dest: string; stepId: string; srcDir: string; signal?: AbortSignal }): Promise<void> {
    assertGrant(grant, this.info.name, on, 'read', (this.deps.now ?? (() => new Date()))());
    if (!o.dest.startsWith('/')) throw new RubiconError('INTERNAL', `restore destination ${o.dest} is not absolute`);
    const tree = this.treeOf(o.locator);
    await this.toolVersion(on);
    const dest = o.dest.replace(/\/+$/, '') || '/';
    const argv = ['rsync', '-a', '--numeric-ids', '--no-human-readable', '--stats', '--mkpath', '-e', grant.sshCommand, `${grant.location}${tree}/`, `${dest}/`];
    const r = await runAttempt(run, on, `${o.stepId}/rsync-restore`, { argv, env: { LC_ALL: 'C' } }, `restore of ${o.artifactId} from vault ${this.info.name}`, {
      accept: (x) => x.exitCode === 0,
      signal: o.signal,
      maxOutputBytes: STEP_OUTPUT_MAX,
    });
    if (r.exitCode !== 0) {
      const e = await this.rsyncFailure(on, r, `restoring artifact ${o.artifactId} to ${dest}`);
      throw e.code === 'CAPTURE_FAILED' ? new RubiconError('VAULT_IO', e.message, { hint: e.hint, details: e.details }) : e;
    }
    if (!parseRsyncStats(r.stdout)) throw new RubiconError('VAULT_IO', `rsync on ${on.name} restored ${o.artifactId} from vault '${this.info.name}' but printed no report; the restore is not trusted`);
  }

  // ---- documents (manifests, index entries), through the vault host's Machine ----

  async has(sha256: string): Promise<boolean> {
    const r = await this.vaultHost.exec({ argv: ['test', '-f', this.docPath(sha256)] });
    return r.exitCode === 0;
  }

  async *read(sha256: string): AsyncIterable<Uint8Array> {
    const file = this.docPath(sha256);
    let bytes: Uint8Array;
    try {
      bytes = await this.vaultHost.readSmall(file, DOC_MAX);
    } catch (e) {
      if (isRubiconError(e) && e.code === 'MACHINE_FILE_MISSING') {
        throw new RubiconError('VAULT_MISSING_OBJECT', `vault '${this.info.name}' has no document ${sha256} (expected ${file} on ${this.where()}); restore from another vault or capture the item again`, {
          details: { vault: this.info.name, object: sha256 },
        });
      }
      throw e;
    }
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) {
      throw new RubiconError('VAULT_CORRUPT', `vault '${this.info.name}': document ${sha256} on ${this.where()} is corrupt (its content hashes to ${actual}); restore from another vault or capture the item again`, {
        details: { vault: this.info.name, object: sha256, actual },
      });
    }
    for (let off = 0; off < bytes.byteLength; off += READ_CHUNK) yield bytes.subarray(off, Math.min(bytes.byteLength, off + READ_CHUNK));
  }

  /** Hashes the document on the vault host (sha256sum) and grades it. Never throws for a bad copy. */
  async check(sha256: string, expectedSize?: number): Promise<ObjectCheck> {
    if (!isSha256Hex(sha256)) return { status: 'error', detail: `'${sha256}' is not a SHA-256 hex digest` };
    const file = this.docPath(sha256);
    try {
      const r = await this.vaultHost.exec({ argv: ['sh', '-c', '[ -f "$1" ] || exit 44; stat -c %s -- "$1" && sha256sum -- "$1"', 'rubicon', file] }, { timeoutMs: 600_000 });
      if (r.exitCode === 44) return { status: 'missing', detail: `document ${sha256} is missing from vault '${this.info.name}'` };
      if (r.exitCode !== 0) return { status: 'error', detail: `vault '${this.info.name}': cannot hash ${file} on ${this.where()}: ${r.stderr.trim().slice(0, 200)}` };
      return gradeDocLines(this.info.name, sha256, expectedSize, r.stdout, this.vaultHost.name);
    } catch (e) {
      return { status: 'error', detail: `vault '${this.info.name}': ${isRubiconError(e) ? e.message : String(e)}` };
    }
  }

  createWriter(): Promise<ObjectWriter> {
    return Promise.reject(
      new RubiconError('INTERNAL', `vault '${this.info.name}' (sftp) takes file trees from rsync on the machine where the data is (ingest), and documents through putBytes; it does not stream objects through Rubicon`),
    );
  }

  /** Idempotent: a document already stored with the same size is not written again. */
  async putBytes(data: Uint8Array): Promise<string> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    const file = this.docPath(sha256);
    await this.ensureLayout();
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', '[ -f "$1" ] && stat -c %s -- "$1"; exit 0', 'rubicon', file] });
    if (Number(r.stdout.trim()) === data.byteLength && r.stdout.trim() !== '') return sha256;
    await this.vaultHost.writeSmall(file, data, { mode: 0o600 });
    return sha256;
  }

  /** Idempotent, with the rule of FilesystemVault.putArtifactIndex (same artifact and manifest: kept; else replaced). */
  async putArtifactIndex(entry: ArtifactIndexEntry): Promise<void> {
    const { doc, bytes } = indexDocument(this.info.name, entry);
    await this.ensureLayout();
    const file = `${this.root}/index/${artifactName(entry.artifactId)}.json`;
    try {
      const current = parseIndexDocument(this.info.name, file, await this.vaultHost.readSmall(file, DOC_MAX));
      if (sameIndexEntry(current, doc)) return;
    } catch (e) {
      if (!(isRubiconError(e) && (e.code === 'MACHINE_FILE_MISSING' || e.code === 'VAULT_CORRUPT'))) throw e;
    }
    await this.vaultHost.writeSmall(file, bytes, { mode: 0o600 });
  }

  /**
   * The manifest and the index entry in ONE call to the vault host
   * (PUT_DOCS_SCRIPT), with the rules of putBytes (a document stored with
   * the same size is kept) and putArtifactIndex: an index entry already
   * there is sent back instead of replaced, and only when it is not the
   * same entry is it replaced (a second call, on a redo only).
   */
  async putArtifactDocuments(manifest: Uint8Array, entry: ArtifactIndexEntry): Promise<string> {
    const sha256 = createHash('sha256').update(manifest).digest('hex');
    const { doc, bytes } = indexDocument(this.info.name, entry);
    await this.ensureLayout();
    const file = `${this.root}/index/${artifactName(entry.artifactId)}.json`;
    const r = await this.vaultHost.exec(
      { argv: ['sh', '-c', PUT_DOCS_SCRIPT, 'rubicon', this.docPath(sha256), String(manifest.byteLength), file, String(bytes.byteLength)], input: Buffer.concat([Buffer.from(manifest), Buffer.from(bytes)]) },
      { maxOutputBytes: DOC_MAX },
    );
    if (r.exitCode !== 0) {
      if (/No space left/i.test(r.stderr)) throw noSpace({ vault: this.info.name, vaultHost: this.vaultHost, vaultPath: this.settings.path, what: `storing the manifest of ${entry.artifactId}` });
      throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot store the documents of ${entry.artifactId} on ${this.where()}: ${r.stderr.trim().slice(0, 200) || `exit ${r.exitCode}`}`);
    }
    if (r.stdout.startsWith('INDEX-EXISTS\n')) {
      let same = false;
      try {
        same = sameIndexEntry(parseIndexDocument(this.info.name, file, Buffer.from(r.stdout.slice('INDEX-EXISTS\n'.length))), doc);
      } catch (e) {
        if (!(isRubiconError(e) && e.code === 'VAULT_CORRUPT')) throw e;
      }
      if (!same) await this.vaultHost.writeSmall(file, bytes, { mode: 0o600 });
    }
    return sha256;
  }

  async listArtifacts(): Promise<ArtifactIndexEntry[]> {
    const script = 'cd "$1" 2>/dev/null || exit 0; for f in *.json; do [ -f "$f" ] || continue; printf "%s\\0" "$f"; cat -- "$f" || exit 1; printf "\\0"; done';
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', script, 'rubicon', `${this.root}/index`] }, { maxOutputBytes: DOC_MAX });
    if (r.exitCode !== 0) throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot read its index on ${this.where()}: ${r.stderr.trim().slice(0, 200)}`);
    const parts = r.stdout.split('\0');
    const entries: ArtifactIndexEntry[] = [];
    for (let i = 0; i + 1 < parts.length; i += 2) entries.push(parseIndexDocument(this.info.name, `${this.root}/index/${parts[i]}`, Buffer.from(parts[i + 1] ?? '')));
    return sortIndex(entries);
  }

  /** Write-once on the vault host (a name already there is kept), in one call: `ln` of a temp file fails when the name exists. */
  async putRunDocument(runId: string, name: string, data: Uint8Array): Promise<void> {
    const file = `${this.root}/${runDocKey(runId, name)}`;
    const script = 'umask 077; d=$(dirname -- "$1"); mkdir -p -- "$d" || exit 46; t="$d/.tmp.$$"; cat > "$t" || { rm -f -- "$t"; exit 46; }; ln -- "$t" "$1" 2>/dev/null; rm -f -- "$t"; [ -f "$1" ] || exit 47';
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', script, 'rubicon', file], input: Buffer.from(data) });
    if (r.exitCode !== 0) {
      if (/No space left/i.test(r.stderr)) throw noSpace({ vault: this.info.name, vaultHost: this.vaultHost, vaultPath: this.settings.path, what: `storing ${runDocKey(runId, name)}` });
      throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot store ${runDocKey(runId, name)} on ${this.where()}: ${r.stderr.trim().slice(0, 200) || `exit ${r.exitCode}`}`);
    }
  }

  async listRunDocuments(runId: string): Promise<RunDocument[]> {
    const dir = `${this.root}/${runDocsFolder(runId)}`;
    const script = 'cd "$1" 2>/dev/null || exit 0; for f in *.json; do [ -f "$f" ] || continue; printf "%s\\0" "$f"; cat -- "$f" || exit 1; printf "\\0"; done';
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', script, 'rubicon', dir] }, { maxOutputBytes: DOC_MAX });
    if (r.exitCode !== 0) throw new RubiconError('VAULT_IO', `vault '${this.info.name}': cannot read ${dir} on ${this.where()}: ${r.stderr.trim().slice(0, 200)}`);
    const parts = r.stdout.split('\0');
    const out: RunDocument[] = [];
    for (let i = 0; i + 1 < parts.length; i += 2) {
      const name = runDocName(parts[i]!);
      if (name) out.push({ name, where: `${this.vaultHost.name}:${dir}/${parts[i]}`, data: Buffer.from(parts[i + 1] ?? '') });
    }
    return out;
  }

  /** Flushes the vault host's filesystem that holds the vault (syncfs through `sync -f`; plain `sync` where that is missing). */
  async sync(): Promise<void> {
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', 'sync -f -- "$1" 2>/dev/null || sync', 'rubicon', this.root || '/'] }, { timeoutMs: 600_000 });
    if (r.exitCode !== 0) throw new RubiconError('VAULT_IO', `vault '${this.info.name}': flushing ${this.settings.path} on ${this.where()} failed: ${r.stderr.trim().slice(0, 200)}`);
  }
}

function sameCounts(s: RsyncStats | undefined, want: { files: number; bytes: number }): boolean {
  return s !== undefined && s.regularFiles === want.files && s.totalSize === want.bytes;
}

/**
 * On the vault host: $1 the final tree folder. Removes the files named on
 * stdin (NUL-separated, relative) from `$1.partial`, then puts it in place of
 * `$1` (an older copy of the same artifact goes to `$1.old` and is removed).
 * Idempotent: after a crash anywhere in it, running it again finishes it.
 */
const FINALIZE_SCRIPT = String.raw`
t=$1; p="$1.partial"; o="$1.old"
if [ -d "$p" ]; then
  (cd "$p" && xargs -0 -r rm -f --) || exit 1
  rm -rf -- "$o" || exit 1
  if [ -d "$t" ]; then mv -- "$t" "$o" || exit 1; fi
  mv -- "$p" "$t" || exit 1
  rm -rf -- "$o"
  exit 0
fi
cat > /dev/null
[ -d "$t" ] && exit 0
echo "neither $p nor $t exists" >&2
exit 3
`;

/**
 * On the vault host: $1 document path, $2 its size, $3 index file, $4 its
 * size; stdin the document's bytes then the index entry's. The document is
 * written (temp + rename, 0600) unless a file of that size is there (it is
 * content-addressed); the index entry is written when absent, else
 * "INDEX-EXISTS" and the stored entry are printed (the caller decides).
 */
const PUT_DOCS_SCRIPT = String.raw`
umask 077
put() { mkdir -p -- "$(dirname -- "$1")" || exit 46; t="$1.rubicon-tmp.$$"; head -c "$2" > "$t" && [ "$(stat -c %s -- "$t")" = "$2" ] && chmod 600 "$t" && mv -f -- "$t" "$1" || { rm -f -- "$t"; exit 46; }; }
if [ -f "$1" ] && [ "$(stat -c %s -- "$1")" = "$2" ]; then head -c "$2" > /dev/null; else put "$1" "$2"; fi
if [ -f "$3" ]; then cat > /dev/null; echo INDEX-EXISTS; exec cat -- "$3"; fi
put "$3" "$4"
`;

/** The worse of two grades (as restic.ts worst), details joined. Pure. */
function worstOf(a: ObjectCheck, b: ObjectCheck): ObjectCheck {
  const order = ['missing', 'size-invalid', 'checksum-mismatch', 'error', 'ok'];
  const status = order.indexOf(a.status) <= order.indexOf(b.status) ? a.status : b.status;
  const detail = [a.detail, b.detail].filter(Boolean).join('; ');
  return detail ? { status, detail } : { status };
}

/** The sftp vault for a runbook entry. Registered by the composition root under `kind: sftp`. */
export function createSftpVault(settings: SftpVaultSettings, deps: ToolVaultDeps): SftpVault {
  return new SftpVault(settings, deps);
}
