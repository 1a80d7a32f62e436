import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { RubiconError, isRubiconError } from '../core/errors.ts';
import type { CopyStatus, ManifestEntry, VaultInfo } from '../core/types.ts';
import { isSha256Hex } from '../core/paths.ts';
import type { ExecResult, Machine, StepResult } from '../machines/machine.ts';
import { windowsPath } from '../machines/windows/windows-machine.ts';
import type { VaultSettings } from '../runbook/load.ts';
import { assertGrant, issueGrant, revokeGrant, toolArg, type GrantHost } from './grants.ts';
import {
  RESTIC_SHAPES,
  artifactName,
  checkEntries,
  firstOf,
  gradeDocLines,
  indexDocument,
  parseIndexDocument,
  runAttempt,
  sameIndexEntry,
  sharedToolFailure,
  sortIndex,
  toolLines,
  toolVersion,
  totalBytes,
  userAtHost,
  type FailureContext,
} from './remote-tools.ts';
import type { ToolVaultDeps } from './sftp.ts';
import { runDocKey } from './run-docs.ts';
import type { ArtifactIndexEntry, Grant, GrantOptions, ObjectCheck, ObjectWriter, RunDocument, ToolVault, VaultCaps, VaultStepRun } from './vault.ts';

/**
 * The `restic` vault: a restic repository in a folder on an SSH vault host.
 * Other machines reach it as `sftp:<user>@<host>:<path>` with
 * `-o sftp.command=…` through their grant; Rubicon's own operations on it
 * (init, check, ls, documents) run ON the vault host with the local
 * backend, where the data is.
 *
 * The password (the runbook's passwordEnv / passwordFile, read on THIS
 * machine, trimmed like restic trims password files, one line):
 * - steps on the target / proving ground read it from the grant's password
 *   file (`<workDir>/grants/<id>/password`, 0600, removed by revoke);
 *   RESTIC_PASSWORD_FILE names only the path;
 * - operations on the vault host get it on restic's stdin: restic 0.14
 *   reads the password from stdin when stdin is not a terminal
 *   (cmd/restic/global.go at v0.14.0, ReadPassword: `if stdinIsTerminal()
 *   … else { password, err = readPassword(os.Stdin) }`, one line through a
 *   bufio.Scanner; ReadPasswordTwice reads it once for `init` when stdin is
 *   not a terminal). The orchestrator sends it as the first line of the
 *   ssh session's stdin; a small sh script keeps it in a shell variable and
 *   pipes it into each restic with the printf builtin, so it is never on
 *   the vault host's disk, in argv or in an environment;
 * - documents (an artifact's manifest and index entry) are staged as files
 *   in a private folder on the vault host's RAM disk and backed up in ONE
 *   restic run, which reads the password from stdin like every other
 *   command here (PUT_DOCS_SCRIPT). They were once `backup --stdin` runs,
 *   one per document, with the password through a FIFO because restic 0.14
 *   refuses the password on stdin when stdin is the data.
 *
 * Documents (manifests, index entries) are stored in the repository itself,
 * so the repository alone is enough to prove from (`rubicon verify`, the
 * proving ground): snapshots made on the vault host, host `rubicon`, tagged `rubicon-doc:<sha256>` (file
 * /docs/<sha256>) and/or `rubicon-index:<name>` (file /index/<name>.json;
 * the newest snapshot per name is the entry); an artifact's two documents
 * are one snapshot with both tags. A document's path comes from its tag.
 *
 * Artifacts: `restic backup --json --files-from-raw -` on the source
 * machine, tagged `rubicon`, `artifact:<name>`, `rubicon-run:<runId>` and
 * `source:<percent-encoded srcDir>`; the locator is the full snapshot id.
 *
 * Contracts (besides ToolVault's):
 * - ingest reads restic's own JSON summary and compares its file count and
 *   bytes with the manifest (a file that vanished is "skipped" by restic
 *   with exit 0: the count catches it).
 * - checkCopy = `restic check --read-data` of the whole repository (run once
 *   per vault object and remembered for the snapshots that existed when it
 *   ran: a prove phase with many artifacts reads the repository once; a
 *   snapshot made later, or a new vault object, checks again) + `restic ls
 *   --json <snapshot>` compared with the manifest entries (path under the
 *   snapshot's source folder, size, mtime, mode). restic ls has no content
 *   hashes: content is verified by check --read-data (every blob against its
 *   SHA-256 id) and by the proof, which restores and hashes.
 * - replaceable: false. A restic repository is append-only here: a damaged
 *   pack is not replaced in place (restic 0.14 has no `repair`); the copy is
 *   taken again into a new snapshot or another vault.
 */

export type ResticVaultSettings = Extract<VaultSettings, { kind: 'restic' }>;

export interface ResticVaultDeps extends ToolVaultDeps {
  /** Environment to read passwordEnv from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

const DOC_MAX = 512 * 1024 * 1024;
const LS_MAX = 1024 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
const CHECK_TIMEOUT_MS = 24 * 3600_000;
const STEP_OUTPUT_MAX = 64 * 1024 * 1024;

/**
 * Reads the password line on stdin and defines r(): restic on the local
 * repository with the password piped in; -q because restic 0.14 prints
 * "reading repository password from stdin" on stdout otherwise (which would
 * land in a dump). rv() keeps restic's messages (check's "no errors were
 * found"). $1 = repository.
 */
const PRELUDE = String.raw`
IFS= read -r RUBICON_PW || { echo "rubicon: no repository password on stdin" >&2; exit 121; }
RUBICON_REPO=$1; shift
command -v restic >/dev/null 2>&1 || { echo "rubicon: restic: not found" >&2; exit 127; }
r() { printf '%s\n' "$RUBICON_PW" | restic --no-cache -q -r "$RUBICON_REPO" "$@"; }
rv() { printf '%s\n' "$RUBICON_PW" | restic --no-cache -r "$RUBICON_REPO" "$@"; }
`;

/**
 * Opens (or creates) the repository and lists its snapshots in one call:
 * `restic snapshots --json` both proves that the password opens the
 * repository (as `cat config` did) and fills the vault object's snapshot
 * cache, so a run pays restic's key derivation once here instead of once per
 * lookup. Prints the version line, then the snapshots' JSON.
 */
const INIT_SCRIPT = PRELUDE + String.raw`
restic version | head -n 1
if [ ! -f "$RUBICON_REPO/config" ]; then
  r init > /dev/null; rc=$?
  if [ $rc -ne 0 ] && [ ! -f "$RUBICON_REPO/config" ]; then exit $rc; fi
fi
r snapshots --json
`;

/**
 * Stores documents as ONE snapshot (an artifact's manifest and its index
 * entry together: one restic run, one key derivation). $1 repo, then
 * triples (relative file name, byte count, '-'), then '--', then backup
 * arguments; stdin is the password line, then the documents' bytes one
 * after the other. The documents are staged in a private folder (0700) on
 * the vault host's RAM disk (/dev/shm) where it has one, else its temp
 * folder, removed on exit; they are backed up with relative names, so the
 * snapshot holds /docs/<sha256> and /index/<name>.json exactly as the
 * single-document snapshots made with --stdin do. The password goes on
 * restic's stdin (no --stdin here), never to the disk. After the backup the
 * script lists the repository's snapshot files (plain ls, no restic) so the
 * caller finds the full id of the new snapshot.
 */
const PUT_DOCS_SCRIPT = PRELUDE + String.raw`
umask 077
if [ -d /dev/shm ] && [ -w /dev/shm ]; then d=$(mktemp -d -p /dev/shm) || exit 120; else d=$(mktemp -d) || exit 120; fi
trap 'rm -rf -- "$d"' EXIT
names=
while [ $# -ge 3 ] && [ "$1" != -- ]; do
  f=$1; n=$2; shift 3
  mkdir -p -- "$d/$(dirname -- "$f")" || exit 120
  head -c "$n" > "$d/$f" || exit 120
  [ "$(stat -c %s -- "$d/$f")" = "$n" ] || { echo "rubicon: short document $f" >&2; exit 120; }
  names="$names $f"
done
[ "$1" = -- ] && shift
cd "$d" || exit 120
# shellcheck disable=SC2086 -- names are docs/<hex> and index/<encoded name>.json: no spaces, no globs
rv backup --json "$@" $names || exit $?
echo RUBICON-SNAPSHOTS
ls -- "$RUBICON_REPO/snapshots"
`;

/** Dumps documents: $1 repo, then pairs (snapshot id, path). Prints "<id> <base64>" per line. */
const DUMP_SCRIPT = PRELUDE + String.raw`
umask 077
d=$(mktemp -d) || exit 120
trap 'rm -rf -- "$d"' EXIT
while [ $# -ge 2 ]; do
  r dump "$1" "$2" > "$d/doc" || exit 1
  printf '%s ' "$1"; base64 -w0 < "$d/doc"; printf '\n'
  shift 2
done
`;

/** Hashes one document where it is stored: $1 repo, $2 snapshot, $3 path. Prints size and sha256sum's line. */
const HASH_DOC_SCRIPT = PRELUDE + String.raw`
umask 077
d=$(mktemp -d) || exit 120
trap 'rm -rf -- "$d"' EXIT
r dump "$1" "$2" > "$d/doc" || exit 1
stat -c %s -- "$d/doc" && sha256sum < "$d/doc"
`;

const RESTIC_CMD_SCRIPT = PRELUDE + 'r "$@"\n';
/**
 * check --read-data, then the ids of the snapshots that were there when it
 * ran (the snapshot files' names: a plain ls, no second restic start). The
 * check holds restic's exclusive lock, so no snapshot is removed while it
 * reads; a snapshot added during the check may be listed without having
 * been read, which is why the listing comes from BEFORE the check.
 */
const CHECK_SCRIPT = PRELUDE + String.raw`
before=$(ls -- "$RUBICON_REPO/snapshots" 2>/dev/null)
rv check --read-data; rc=$?
echo RUBICON-SNAPSHOTS
printf '%s\n' "$before"
exit $rc
`;

/** Full ids of snapshot files starting with $2 in repository $1 (plain ls on the vault host: no password, no restic). */
const SNAPSHOT_FILES_SCRIPT = 'cd "$1/snapshots" 2>/dev/null || exit 0; for f in "$2"*; do [ -f "$f" ] && printf "%s\\n" "$f"; done; exit 0';

/**
 * On the restoring machine: $1 snapshot, $2 source folder (absolute, as
 * restic stored it), $3 destination; then the restic argv. restic 0.14 has
 * no `<snapshot>:<subfolder>` (restic 0.17 added it), so it restores into a
 * staging folder beside the destination and moves `<staging><srcDir>` to the
 * destination (one rename, same filesystem). The destination must be absent
 * or empty. Idempotent: the staging folder is emptied first.
 */
const RESTORE_SCRIPT = String.raw`
snap=$1; src=$2; dest=$3; shift 3
st="$dest.rubicon-staging"
if [ -d "$dest" ] && [ -n "$(ls -A -- "$dest")" ]; then echo "rubicon: destination $dest is not empty" >&2; exit 90; fi
rm -rf -- "$st" && mkdir -p -- "$st" || exit 91
"$@" restore "$snap" --target "$st" || exit $?
if [ "$src" = / ]; then from=$st; else from=$st$src; fi
[ -d "$from" ] || { echo "rubicon: the snapshot has no folder $src" >&2; exit 92; }
if [ -d "$dest" ]; then rmdir -- "$dest" || exit 93; fi
mkdir -p -- "$(dirname -- "$dest")" && mv -- "$from" "$dest" || exit 93
rm -rf -- "$st"
`;

/** A tag value restic keeps intact (it splits --tag on commas): percent-encoding outside [A-Za-z0-9._/~-]. Pure. */
export function encodeTag(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9._/~-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function decodeTag(s: string): string {
  return decodeURIComponent(s);
}

export interface ResticSummary {
  snapshotId: string;
  files: number;
  bytes: number;
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
}

/**
 * restic backup --json's own report (restic 0.14, internal/ui/backup/json.go
 * summaryOutput: message_type "summary", total_files_processed,
 * total_bytes_processed, files_new/changed/unmodified, snapshot_id) and the
 * error messages (message_type "error", item). Pure.
 */
export function parseBackupJson(stdout: string): { summary?: ResticSummary; errors: string[] } {
  let summary: ResticSummary | undefined;
  const errors: string[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (m.message_type === 'summary' && typeof m.snapshot_id === 'string') {
      summary = {
        snapshotId: m.snapshot_id,
        files: Number(m.total_files_processed),
        bytes: Number(m.total_bytes_processed),
        filesNew: Number(m.files_new),
        filesChanged: Number(m.files_changed),
        filesUnmodified: Number(m.files_unmodified),
      };
    } else if (m.message_type === 'error') {
      errors.push(typeof m.item === 'string' ? m.item : 'an item');
    }
  }
  return { summary, errors };
}

/** Files restic skipped because they were gone ("<path> does not exist, skipping" on stderr). Pure. */
export function skippedPaths(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => /^(.*) does not exist, skipping$/.exec(l.trim())?.[1])
    .filter((p): p is string => p !== undefined);
}

export interface LsNode {
  path: string;
  type: string;
  size: number;
  mtimeMs: number;
  mode: number;
}

/** `2026-12-01T18:39:40.129379485Z` / `…+01:00` → milliseconds since the epoch with sub-ms precision. Pure. */
export function rfc3339ToMs(s: string): number {
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(s);
  if (!m) return Number.NaN;
  const whole = Date.parse(`${m[1]}${m[3] === 'Z' ? 'Z' : m[3]}`);
  const ns = Number(((m[2] ?? '') + '000000000').slice(0, 9));
  return whole + ns / 1e6;
}

/** Go's os.FileMode → POSIX permission bits (setuid 1<<23, setgid 1<<22, sticky 1<<20). Pure. */
export function goModeToPosix(mode: number): number {
  let p = mode & 0o777;
  if (mode & 2 ** 23) p |= 0o4000;
  if (mode & 2 ** 22) p |= 0o2000;
  if (mode & 2 ** 20) p |= 0o1000;
  return p;
}

/** restic ls --json (0.14: a snapshot line, then one node per line). Pure. */
export function parseLsJson(stdout: string): { snapshot?: { id: string; tags: string[]; paths: string[] }; nodes: LsNode[] } {
  let snapshot: { id: string; tags: string[]; paths: string[] } | undefined;
  const nodes: LsNode[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    let m: Record<string, unknown>;
    try {
      m = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (m.struct_type === 'snapshot') {
      snapshot = { id: String(m.id), tags: Array.isArray(m.tags) ? m.tags.map(String) : [], paths: Array.isArray(m.paths) ? m.paths.map(String) : [] };
    } else if (m.struct_type === 'node') {
      nodes.push({ path: String(m.path), type: String(m.type), size: Number(m.size ?? 0), mtimeMs: rfc3339ToMs(String(m.mtime)), mode: goModeToPosix(Number(m.mode ?? 0)) });
    }
  }
  return { snapshot, nodes };
}

/** Compares a snapshot listing with manifest entries under `srcDir`. Pure. */
export function compareListing(vault: string, artifactId: string, srcDir: string, nodes: readonly LsNode[], entries: readonly ManifestEntry[]): ObjectCheck {
  const base = srcDir === '/' ? '' : srcDir.replace(/\/+$/, '');
  const files = new Map<string, LsNode>();
  for (const n of nodes) if (n.type === 'file' && n.path.startsWith(`${base}/`)) files.set(n.path.slice(base.length + 1), n);
  const missing: string[] = [];
  const size: string[] = [];
  const meta: string[] = [];
  for (const e of entries) {
    const n = files.get(e.path);
    if (!n) missing.push(e.path);
    else if (n.size !== e.size) size.push(e.path);
    else if (Math.abs(n.mtimeMs - e.mtimeMs) > 0.001 || n.mode !== (e.mode & 0o7777)) meta.push(e.path);
  }
  const listed = new Set(entries.map((e) => e.path));
  const extra = [...files.keys()].filter((p) => !listed.has(p));
  const parts: string[] = [];
  if (missing.length) parts.push(`${missing.length} manifest file(s) not in the snapshot: ${firstOf(missing)}`);
  if (size.length) parts.push(`${size.length} file(s) with another size than the manifest: ${firstOf(size)}`);
  if (meta.length) parts.push(`${meta.length} file(s) with another mtime or mode than the manifest (not the captured version): ${firstOf(meta)}`);
  if (extra.length) parts.push(`${extra.length} file(s) in the snapshot but not in the manifest: ${firstOf(extra)}`);
  const status: CopyStatus = missing.length ? 'missing' : size.length ? 'size-invalid' : meta.length ? 'error' : 'ok';
  if (status === 'ok' && !extra.length) return { status };
  return { status, detail: `vault '${vault}', snapshot of ${artifactId}: ${parts.join('; ')}` };
}

export interface RepoCheck {
  status: CopyStatus;
  detail?: string;
  /** False for a result that says nothing about the data (locked, unreachable): not remembered. */
  final: boolean;
}

/** restic check --read-data's report → a grade naming the damaged pack files. Pure. */
export function parseCheck(vault: string, exitCode: number, out: string): RepoCheck {
  if (exitCode === 0 && /no errors were found/.test(out)) return { status: 'ok', final: true };
  if (/repository is already locked|unable to create lock/i.test(out)) {
    return { status: 'error', detail: `vault '${vault}': restic check could not lock the repository (another restic is using it); check again later`, final: false };
  }
  const packs = new Set<string>();
  for (const m of out.matchAll(/Pack ID does not match, want ([0-9a-f]{64})/g)) packs.add(`data/${m[1]!.slice(0, 2)}/${m[1]}`);
  for (const m of out.matchAll(/^pack ([0-9a-f]{8,64}):/gm)) if (![...packs].some((p) => p.includes(m[1]!))) packs.add(`pack ${m[1]}`);
  const trees = [...out.matchAll(/^error for tree ([0-9a-f]{8,64})/gm)].map((m) => m[1]!);
  const blobs = /ciphertext verification failed|decrypting blob .* failed|hash does not match|Blob ID does not match/i.test(out);
  if (packs.size > 0 || trees.length > 0 || blobs) {
    const what = [
      packs.size ? `damaged pack file(s) ${firstOf([...packs])}` : '',
      trees.length ? `unreadable tree(s) ${firstOf(trees)}` : '',
      !packs.size && !trees.length ? 'blobs that do not match their hash' : '',
    ].filter(Boolean);
    return { status: 'checksum-mismatch', detail: `vault '${vault}': restic check --read-data found ${what.join(' and ')}; copies in this repository cannot be trusted`, final: true };
  }
  if (/wrong password or no key found/.test(out) || exitCode === 12) return { status: 'error', detail: `vault '${vault}': the repository password does not open the repository`, final: false };
  const lines = toolLines(out, RESTIC_SHAPES);
  return { status: 'error', detail: `vault '${vault}': restic check --read-data exited ${exitCode}${lines}`, final: exitCode !== 0 && /Fatal: repository contains errors/.test(out) };
}

const ORDER: CopyStatus[] = ['missing', 'size-invalid', 'checksum-mismatch', 'error', 'ok'];

/** The worse of two grades, details joined. Pure. */
export function worst(a: ObjectCheck, b: ObjectCheck): ObjectCheck {
  const status = ORDER.indexOf(a.status) <= ORDER.indexOf(b.status) ? a.status : b.status;
  const detail = [a.detail, b.detail].filter(Boolean).join('; ');
  return detail ? { status, detail } : { status };
}

interface DocRef {
  id: string;
  path: string;
  time: string;
}

/** A snapshot as `restic snapshots --json` lists it (the fields Rubicon reads). */
interface SnapshotInfo {
  id: string;
  time: string;
  tags: string[];
  paths: string[];
}

/** `restic snapshots --json`'s array (the first line that is one). Throws on anything else. Pure. */
export function parseSnapshotsJson(out: string): SnapshotInfo[] {
  const line = out.split('\n').find((l) => l.startsWith('['));
  if (line === undefined) throw new Error('no JSON array');
  const arr = JSON.parse(line) as { id: string; time: string; tags?: string[]; paths?: string[] }[];
  return arr.map((x) => ({ id: x.id, time: x.time, tags: x.tags ?? [], paths: x.paths ?? [] }));
}

/** The newest snapshot per value of a `<prefix><value>` tag, with the document path it holds. Pure. */
function newestByTag(snaps: Iterable<SnapshotInfo>, prefix: string, pathOf: (value: string) => string | undefined): Map<string, DocRef> {
  const map = new Map<string, DocRef>();
  for (const x of snaps) {
    for (const t of x.tags) {
      if (!t.startsWith(prefix)) continue;
      const value = t.slice(prefix.length);
      const p = pathOf(value);
      if (p && (!map.has(value) || map.get(value)!.time < x.time)) map.set(value, { id: x.id, path: p, time: x.time });
    }
  }
  return map;
}

export class ResticVault implements ToolVault {
  readonly tool = 'restic' as const;
  readonly info: VaultInfo;
  /** immutable: the vault user can delete packs; serverHash: restic's blobs are named by their SHA-256 and check --read-data verifies them; append-only, so not replaceable. */
  readonly caps: VaultCaps = { immutable: false, serverHash: 'sha256', replaceable: false, offTarget: true, encrypted: true };
  readonly settings: ResticVaultSettings;
  readonly vaultHost: Machine;
  private readonly deps: ResticVaultDeps;
  private readonly grantHost: GrantHost;
  private readonly machines = new Map<string, Machine>();
  private initialized: Promise<string> | undefined;
  private passwordValue: Promise<string> | undefined;
  private repoCheck: Promise<RepoCheck & { covered?: string[] }> | undefined;
  /**
   * The repository's snapshots as this object knows them: read once (with
   * the repository's opening), refreshed by the repository check, and
   * updated with every snapshot this object or its ingests add. Only an
   * optimization: a lookup that misses reads the list again, and a cached
   * "absent" is only ever used to decide to WRITE (a duplicate document
   * snapshot at worst), never to skip a write or to grade a copy.
   */
  private snaps: Map<string, SnapshotInfo> | undefined;

  constructor(settings: ResticVaultSettings, deps: ResticVaultDeps) {
    if (!settings.path.startsWith('/') || /[\0\r\n]/.test(settings.path)) {
      throw new RubiconError('ARGUMENTS_INVALID', `vault '${settings.name}': path "${settings.path}" must be an absolute folder on the vault host`);
    }
    this.settings = settings;
    this.deps = deps;
    this.vaultHost = deps.vaultHost;
    const h = settings.host;
    this.info = { name: settings.name, kind: 'restic', location: `sftp:${userAtHost(h.user, h.host)}:${settings.path}`, offTarget: true, immutable: false, encrypted: true, tool: 'restic' };
    this.grantHost = { vault: settings.name, vaultHost: deps.vaultHost, ssh: settings.host, runId: deps.runId, workDirOf: deps.workDirOf, now: deps.now };
  }

  private where(): string {
    return `${this.vaultHost.name} (${this.vaultHost.address})`;
  }

  /** Where the password comes from, for messages (never the password). */
  private passwordSource(): string {
    const p = this.settings.password;
    return 'env' in p ? `the environment variable ${p.env}` : `the file ${p.file}`;
  }

  /** The repository password, read on this machine once. PRECONDITION_FAILED when it is not there. */
  private password(): Promise<string> {
    this.passwordValue ??= (async () => {
      const p = this.settings.password;
      let raw: string | undefined;
      if ('env' in p) raw = (this.deps.env ?? process.env)[p.env];
      else {
        try {
          raw = await readFile(p.file, 'utf8');
        } catch (e) {
          throw new RubiconError('PRECONDITION_FAILED', `vault '${this.info.name}': cannot read the repository password file ${p.file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
            hint: 'create it (mode 0600) with the repository password on one line, or fix vaults[].passwordFile',
          });
        }
      }
      const pw = (raw ?? '').trim();
      if (pw === '') {
        throw new RubiconError('PRECONDITION_FAILED', `vault '${this.info.name}': ${this.passwordSource()} is empty or not set; it must hold the restic repository password`, {
          hint: 'set it to the repository password before starting Rubicon',
        });
      }
      if (/[\r\n\0]/.test(pw)) {
        throw new RubiconError('PRECONDITION_FAILED', `vault '${this.info.name}': the password in ${this.passwordSource()} has more than one line`, { hint: 'put the password on one line' });
      }
      return pw;
    })();
    this.passwordValue.catch(() => {
      this.passwordValue = undefined;
    });
    return this.passwordValue;
  }

  /**
   * The repository password as the bytes of a password file (one line), for
   * the capture of the vault's secret item (`vault-password`,
   * src/run/remote.ts). The caller writes it only to a 0600 file on a
   * machine; it never goes to a log, the journal or an event.
   */
  async passwordFile(): Promise<Uint8Array> {
    return Buffer.from(`${await this.password()}\n`);
  }

  /** Where the password comes from, for messages (never the password). */
  get passwordOrigin(): string {
    return this.passwordSource();
  }

  /**
   * Whether `grant` opens the repository from `on`, with whatever password
   * file its env names there (`restic cat config`, read-only, --no-lock).
   * ok, or wrong (the password does not open it), or the tool's failure as a
   * typed error (TOOL_MISSING, unreachable vault host, …). Never logs the password.
   */
  async opens(on: Machine, grant: Grant): Promise<{ ok: true } | { ok: false; detail: string }> {
    await this.toolVersion(on);
    const r = await on.exec({ argv: this.resticArgv(grant, '--no-cache', '--no-lock', 'cat', 'config'), env: grant.env }, { timeoutMs: 600_000 });
    if (r.exitCode === 0) return { ok: true };
    if (r.exitCode === 12 || /wrong password or no key found/.test(r.stderr)) return { ok: false, detail: `the password does not open restic repository ${this.settings.path} (vault '${this.info.name}')` };
    if (/Fatal: .*password file|Resolving password failed|no such file/i.test(r.stderr)) return { ok: false, detail: `${on.name} has no password file for vault '${this.info.name}'` };
    throw await this.resticFailure(on, r, `opening the repository of vault '${this.info.name}'`);
  }

  /** Runs a script on the vault host with the password as the first stdin line, then `rest` of stdin. */
  private async onHost(script: string, args: string[], o: { rest?: Uint8Array; timeoutMs?: number; maxOutputBytes?: number } = {}): Promise<ExecResult> {
    const pw = await this.password();
    const input = Buffer.concat([Buffer.from(`${pw}\n`), Buffer.from(o.rest ?? new Uint8Array())]);
    return this.vaultHost.exec({ argv: ['sh', '-c', script, 'rubicon', this.settings.path, ...args], input }, { timeoutMs: o.timeoutMs ?? 600_000, maxOutputBytes: o.maxOutputBytes });
  }

  private failureContext(on: Machine, r: { exitCode: number; stderr: string }, what: string): FailureContext {
    const h = this.settings.host;
    return { vault: this.info.name, tool: 'restic', machine: on, vaultHost: this.vaultHost, vaultAddress: `${h.user}@${h.host}:${h.port}`, vaultPath: this.settings.path, exitCode: r.exitCode, stderr: r.stderr, what };
  }

  private wrongPassword(): RubiconError {
    return new RubiconError('VAULT_PASSWORD', `vault '${this.info.name}': the password in ${this.passwordSource()} does not open the restic repository ${this.settings.path} on ${this.where()}`, {
      hint: `put the repository's password into ${this.passwordSource()}; if the repository is new and the folder holds another one, point vaults[].path elsewhere`,
      details: { vault: this.info.name, machine: this.vaultHost.name },
    });
  }

  /** A failure of restic (on the vault host or on `on`) as a typed error. */
  private async resticFailure(on: Machine, r: { exitCode: number; stderr: string }, what: string, code: 'VAULT_IO' | 'CAPTURE_FAILED' = 'VAULT_IO'): Promise<RubiconError> {
    if (r.exitCode === 12 || /wrong password or no key found/.test(r.stderr)) return this.wrongPassword();
    const ctx = this.failureContext(on, r, what);
    const shared = await sharedToolFailure(ctx, { unspecific: /Save\(|sftp: "Failure"|SSH_FX_FAILURE|Write:|unable to save|close .*: /i.test(r.stderr) });
    if (shared) return shared;
    return new RubiconError(code, `restic on ${on.name} failed (exit ${r.exitCode}) while ${what} (vault '${this.info.name}')${toolLines(r.stderr, RESTIC_SHAPES)}`, {
      hint: `read the step's log beside the run for restic's full output, then resume the run`,
      details: { exitCode: r.exitCode },
    });
  }

  /**
   * Makes sure the repository exists and the password opens it: `restic
   * init` when it has no config (idempotent: a concurrent init is fine),
   * then `restic snapshots --json` (which needs the password too, and fills
   * the snapshot cache). Once per vault object, one call. VAULT_PASSWORD for a
   * wrong password (restic 0.14: exit 1 "wrong password or no key found";
   * 0.17+: exit 12), TOOL_MISSING, NO_SPACE. Returns restic's version line.
   */
  ensureInitialized(): Promise<string> {
    this.initialized ??= (async () => {
      const r = await this.onHost(INIT_SCRIPT, [], { maxOutputBytes: DOC_MAX });
      if (r.exitCode !== 0) throw await this.resticFailure(this.vaultHost, r, 'opening the repository');
      this.snaps = new Map(this.parseSnapshots(r.stdout).map((x) => [x.id, x] as const));
      const v = /restic (\d+\.\d+\.\d+\S*)/.exec(r.stdout)?.[1];
      return v ? `restic ${v}` : 'restic';
    })();
    this.initialized.catch(() => {
      this.initialized = undefined;
    });
    return this.initialized;
  }

  // ---- grants ----

  /**
   * A write grant first makes sure the repository exists and the password
   * opens it (VAULT_PASSWORD before anything is handed to the machine); a
   * read grant does not (one restic start fewer on the vault host): a
   * missing repository or a wrong password then fails the restore on the
   * machine, with the same typed errors.
   */
  async grant(to: Machine, mode: 'read' | 'write', ttlMs: number, go: GrantOptions = {}): Promise<Grant> {
    if (mode === 'write' && go.withoutSecret) throw new RubiconError('INTERNAL', `vault '${this.info.name}': a write grant always carries the repository password`);
    if (mode === 'write') await this.ensureInitialized();
    // Without the secret the orchestrator's password is not even read: the machine gets it from elsewhere (a captured secret item).
    const pw = go.withoutSecret ? undefined : await this.password();
    const h = this.settings.host;
    const location = `sftp:${userAtHost(h.user, h.host)}:${this.settings.path}`;
    const g = await issueGrant(this.grantHost, to, {
      mode,
      ttlMs,
      ...(go.beforeKey ? { beforeKey: go.beforeKey } : {}),
      // sshd serves its built-in sftp server for this key whatever the client asks; -R: read-only (restic needs --no-lock then).
      forcedCommand: mode === 'write' ? 'internal-sftp' : 'internal-sftp -R',
      // `repository`: for restic's --repository-file where a program gets no environment of ours (the Windows capture and landing scripts).
      // No password file for a grant made withoutSecret: the proving ground puts the captured password there itself.
      files: pw === undefined ? { repository: `${location}\n` } : { password: `${pw}\n`, repository: `${location}\n` },
      settings: (dir, sshArgv) => ({
        sshCommand: [...sshArgv, '-l', h.user, '-s', h.host, 'sftp'].map(toolArg).join(' '),
        env: { RESTIC_REPOSITORY: location, RESTIC_PASSWORD_FILE: windowsPath(dir, 'password') },
        location,
      }),
    });
    this.machines.set(to.name, to);
    return g;
  }

  /** Revokes the key, then removes the grant folder with the password file (on `on`, or the machine this object granted to). Idempotent. */
  async revoke(grant: Grant, on?: Machine): Promise<void> {
    await revokeGrant(this.grantHost, grant, on ?? this.machines.get(grant.machine));
  }

  private resticArgv(g: Grant, ...rest: string[]): string[] {
    return ['restic', '-o', `sftp.command=${g.sshCommand}`, ...rest];
  }

  /** restic's version on `on`, asked once per machine object (TOOL_MISSING is asked again; remote-tools.ts). */
  private toolVersion(on: Machine): Promise<string> {
    return toolVersion(on, 'restic', this.info.name);
  }

  // ---- artifacts ----

  async ingest(
    run: VaultStepRun,
    from: Machine,
    grant: Grant,
    o: { artifactId: string; stepId: string; srcDir: string; files: readonly string[]; entries: readonly ManifestEntry[]; base?: { artifactId: string; locator: string }; signal?: AbortSignal },
  ): Promise<{ locator: string; tool: string; report: { files: number; bytes: number } }> {
    assertGrant(grant, this.info.name, from, 'write', (this.deps.now ?? (() => new Date()))());
    checkEntries(this.info.name, o.artifactId, o.entries, o.files);
    if (!o.srcDir.startsWith('/')) throw new RubiconError('INTERNAL', `vault '${this.info.name}': srcDir ${o.srcDir} is not absolute`);
    if (o.base && !/^[0-9a-f]{64}$/.test(o.base.locator)) throw new RubiconError('INTERNAL', `vault '${this.info.name}': base locator "${o.base.locator}" is not a snapshot id`);
    await this.ensureInitialized();
    const version = await this.toolVersion(from);
    const name = artifactName(o.artifactId);
    const src = o.srcDir === '/' ? '' : o.srcDir.replace(/\/+$/, '');
    // An empty item (an empty folder) is the folder itself with everything in it excluded: restic refuses an empty list.
    const empty = o.files.length === 0;
    const list = empty ? `${o.srcDir}\0` : `${o.files.map((f) => `${src}/${f}`).join('\0')}\0`;
    const argv = this.resticArgv(
      grant,
      'backup', '--json', '--files-from-raw', '-',
      ...(empty ? ['--exclude', `${src.replace(/[\\*?[\]]/g, '\\$&')}/*`] : []),
      '--tag', 'rubicon', '--tag', `artifact:${name}`, '--tag', `rubicon-run:${encodeTag(this.deps.runId)}`, '--tag', `source:${encodeTag(o.srcDir)}`,
      '--host', from.name,
      ...(o.base ? ['--parent', o.base.locator] : []),
    );
    const want = { files: o.entries.length, bytes: totalBytes(o.entries) };
    const matches = (r: StepResult) => {
      const s = parseBackupJson(r.stdout).summary;
      return r.exitCode === 0 && s !== undefined && s.files === want.files && s.bytes === want.bytes;
    };
    const r = await runAttempt(run, from, `${o.stepId}/restic-backup`, { argv, input: list, env: grant.env }, `restic backup of ${o.artifactId} into vault ${this.info.name}`, {
      accept: matches,
      signal: o.signal,
      maxOutputBytes: STEP_OUTPUT_MAX,
    });
    const { summary, errors } = parseBackupJson(r.stdout);
    const skipped = skippedPaths(r.stderr);
    if (r.exitCode === 3) {
      throw new RubiconError('CAPTURE_FAILED', `restic on ${from.name} could not read every file of artifact ${o.artifactId} (exit 3: incomplete snapshot)${errors.length ? `: ${firstOf(errors)}` : ''} (vault '${this.info.name}')`, {
        hint: `check that Rubicon's account on ${from.name} can read every file, freeze the service that holds them, then resume the run`,
      });
    }
    if (r.exitCode !== 0) throw await this.resticFailure(from, r, `backing up artifact ${o.artifactId}`, 'CAPTURE_FAILED');
    if (!summary) {
      throw new RubiconError('CAPTURE_FAILED', `restic on ${from.name} ended with exit 0 but printed no JSON summary for artifact ${o.artifactId} (vault '${this.info.name}'); the copy is not trusted`, {
        hint: `check the restic version on ${from.name} (0.14 or newer)`,
      });
    }
    if (summary.files !== want.files || summary.bytes !== want.bytes) {
      const why = skipped.length ? `; restic skipped ${skipped.length} file(s) that no longer existed: ${firstOf(skipped)}` : errors.length ? `; errors for ${firstOf(errors)}` : '';
      throw new RubiconError('CAPTURE_FAILED', `restic's own summary for artifact ${o.artifactId} on ${from.name} says ${summary.files} file(s), ${summary.bytes} bytes; the manifest has ${want.files} file(s), ${want.bytes} bytes${why}`, {
        hint: 'files changed or vanished while they were copied: capture the item again (resume the run), freezing the service that writes them if it keeps happening',
      });
    }
    const locator = await this.fullSnapshotId(summary.snapshotId, name, {
      time: new Date().toISOString(),
      tags: ['rubicon', `artifact:${name}`, `rubicon-run:${encodeTag(this.deps.runId)}`, `source:${encodeTag(o.srcDir)}`],
      paths: [o.srcDir],
    });
    return { locator, tool: version, report: { files: summary.files, bytes: summary.bytes } };
  }

  /**
   * The `restic` argument of the Windows capture script (capture.ps1) for
   * one artifact: the same tags, host and parent as ingest, the repository
   * and password as the grant's files on the machine (never in the
   * arguments), `-o sftp.command=` with the grant's ssh command. Pure.
   */
  scriptBackupArgs(grant: Grant, from: Machine, o: { artifactId: string; srcDir: string; base?: { locator: string } }): {
    repositoryFile: string;
    passwordFile: string;
    options: string[];
    tags: string[];
    host: string;
    parent?: string;
  } {
    assertGrant(grant, this.info.name, from, 'write', (this.deps.now ?? (() => new Date()))());
    if (o.base && !/^[0-9a-f]{64}$/.test(o.base.locator)) throw new RubiconError('INTERNAL', `vault '${this.info.name}': base locator "${o.base.locator}" is not a snapshot id`);
    const name = artifactName(o.artifactId);
    return {
      repositoryFile: windowsPath(grant.dir, 'repository'),
      passwordFile: windowsPath(grant.dir, 'password'),
      options: [`sftp.command=${grant.sshCommand}`],
      tags: ['rubicon', `artifact:${name}`, `rubicon-run:${encodeTag(this.deps.runId)}`, `source:${encodeTag(o.srcDir)}`],
      host: from.name,
      ...(o.base ? { parent: o.base.locator } : {}),
    };
  }

  /** The restore part of the Windows landing script's folder (landing.ps1) for one snapshot, through a read grant. Pure. */
  scriptRestoreArgs(grant: Grant, on: Machine, o: { locator: string; srcDir: string }): { snapshot: string; path: string; repositoryFile: string; passwordFile: string; options: string[] } {
    assertGrant(grant, this.info.name, on, 'read', (this.deps.now ?? (() => new Date()))());
    if (!/^[0-9a-f]{64}$/.test(o.locator)) throw new RubiconError('INTERNAL', `vault '${this.info.name}': "${o.locator}" is not a restic snapshot id`);
    return { snapshot: o.locator, path: o.srcDir, repositoryFile: windowsPath(grant.dir, 'repository'), passwordFile: windowsPath(grant.dir, 'password'), options: [`sftp.command=${grant.sshCommand}`] };
  }

  /**
   * Takes over a backup that restic made on `from` outside a vault step
   * (the Windows capture script, with scriptBackupArgs): the same checks as
   * ingest (exit code, restic's own summary against the manifest's file
   * count and bytes), then the full snapshot id as the locator. The copy
   * itself is checked later (checkCopy) like any other.
   */
  async adoptBackup(
    from: Machine,
    o: { artifactId: string; srcDir: string; entries: readonly ManifestEntry[]; backup: { exitCode: number; snapshotId: string | null; files: number | null; bytes: number | null; errors: string[] } },
  ): Promise<{ locator: string; tool: string; report: { files: number; bytes: number } }> {
    await this.ensureInitialized();
    const version = await this.toolVersion(from);
    const name = artifactName(o.artifactId);
    const b = o.backup;
    if (b.exitCode === 3) {
      throw new RubiconError('CAPTURE_FAILED', `restic on ${from.name} could not read every file of artifact ${o.artifactId} (exit 3: incomplete snapshot)${b.errors.length ? `: ${firstOf(b.errors)}` : ''} (vault '${this.info.name}')`, {
        hint: `check that Rubicon's account on ${from.name} can read every file, freeze the service that holds them, then resume the run`,
      });
    }
    if (b.exitCode !== 0) throw new RubiconError('CAPTURE_FAILED', `restic on ${from.name} failed backing up artifact ${o.artifactId} into vault '${this.info.name}' (exit ${b.exitCode})${b.errors.length ? `: ${firstOf(b.errors)}` : ''}`, { hint: `read the capture step's log for restic's own message, fix it, then resume the run` });
    if (b.snapshotId === null || b.files === null || b.bytes === null) {
      throw new RubiconError('CAPTURE_FAILED', `restic on ${from.name} ended with exit 0 but printed no JSON summary for artifact ${o.artifactId} (vault '${this.info.name}'); the copy is not trusted`, { hint: `check the restic version on ${from.name} (0.14 or newer)` });
    }
    const want = { files: o.entries.length, bytes: totalBytes(o.entries) };
    if (b.files !== want.files || b.bytes !== want.bytes) {
      throw new RubiconError('CAPTURE_FAILED', `restic's own summary for artifact ${o.artifactId} on ${from.name} says ${b.files} file(s), ${b.bytes} bytes; the manifest has ${want.files} file(s), ${want.bytes} bytes`, {
        hint: 'files changed or vanished while they were copied: capture the item again (resume the run), freezing the service that writes them if it keeps happening',
      });
    }
    const locator = await this.fullSnapshotId(b.snapshotId, name, {
      time: new Date().toISOString(),
      tags: ['rubicon', `artifact:${name}`, `rubicon-run:${encodeTag(this.deps.runId)}`, `source:${encodeTag(o.srcDir)}`],
      paths: [o.srcDir],
    });
    return { locator, tool: version, report: { files: b.files, bytes: b.bytes } };
  }

  /**
   * restic 0.14's summary gives the short id; the locator is the full one.
   * Found by the snapshot file's name in the repository on the vault host
   * (a plain listing: restic names a snapshot file by its id), and only when
   * that is not exactly one file, by `restic snapshots` as before. The
   * snapshot itself is read back by checkCopy (`restic ls`), so nothing here
   * is trusted that is not checked later.
   */
  private async fullSnapshotId(short: string, name: string, info: Omit<SnapshotInfo, 'id'>): Promise<string> {
    if (/^[0-9a-f]{64}$/.test(short)) return short;
    if (!/^[0-9a-f]{8,64}$/.test(short)) throw new RubiconError('CAPTURE_FAILED', `vault '${this.info.name}': restic reported snapshot "${short}", which is not a snapshot id`);
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', SNAPSHOT_FILES_SCRIPT, 'rubicon', this.settings.path, short] });
    let ids = r.exitCode === 0 ? r.stdout.split('\n').filter((l) => /^[0-9a-f]{64}$/.test(l)) : [];
    if (ids.length !== 1) {
      const snaps = await this.refreshSnapshots();
      ids = snaps.filter((x) => x.tags.includes(`artifact:${name}`) && x.id.startsWith(short)).map((x) => x.id);
    }
    if (ids.length !== 1) {
      throw new RubiconError('CAPTURE_FAILED', `vault '${this.info.name}': restic reported snapshot ${short}, but the repository on ${this.where()} has ${ids.length} snapshot(s) with that id for ${name}`, {
        hint: 'capture the item again (resume the run)',
      });
    }
    this.snaps?.set(ids[0]!, { id: ids[0]!, ...info });
    return ids[0]!;
  }

  private parseSnapshots(out: string): SnapshotInfo[] {
    try {
      return parseSnapshotsJson(out);
    } catch (e) {
      throw new RubiconError('VAULT_IO', `vault '${this.info.name}': restic snapshots on ${this.where()} printed something that is not JSON`, { cause: e });
    }
  }

  /** Reads the repository's snapshot list again (a cache miss, or a reader that must see other writers). */
  private async refreshSnapshots(): Promise<SnapshotInfo[]> {
    await this.ensureInitialized();
    const r = await this.onHost(RESTIC_CMD_SCRIPT, ['snapshots', '--json'], { maxOutputBytes: DOC_MAX });
    if (r.exitCode !== 0) throw await this.resticFailure(this.vaultHost, r, 'listing snapshots');
    const list = this.parseSnapshots(r.stdout);
    this.snaps = new Map(list.map((x) => [x.id, x] as const));
    return list;
  }

  /** The cached snapshot list (read when there is none yet). */
  private async knownSnapshots(): Promise<SnapshotInfo[]> {
    await this.ensureInitialized();
    return this.snaps ? [...this.snaps.values()] : this.refreshSnapshots();
  }

  /**
   * `restic check --read-data` of the whole repository on the vault host,
   * once per vault object for the snapshots that existed when it ran (see
   * the contract above): a copy whose snapshot (or manifest snapshot) came
   * later than the check, e.g. a final capture's delta proven by the same
   * object, makes it read the repository again, so no snapshot is graded by
   * a check that never read it.
   */
  private async checkRepository(need: readonly string[]): Promise<RepoCheck & { covered?: string[] }> {
    if (this.repoCheck) {
      const c = await this.repoCheck;
      if (!c.covered || need.every((id) => c.covered!.some((x) => x.startsWith(id)))) return c;
      if (this.repoCheck) this.repoCheck = undefined;
    }
    this.repoCheck ??= (async (): Promise<RepoCheck & { covered?: string[] }> => {
      try {
        // No separate opening: check itself needs the password (a wrong one is graded, not remembered).
        const r = await this.onHost(CHECK_SCRIPT, [], { timeoutMs: CHECK_TIMEOUT_MS, maxOutputBytes: DOC_MAX });
        const at = r.stdout.lastIndexOf('RUBICON-SNAPSHOTS\n');
        const checkOut = at < 0 ? r.stdout : r.stdout.slice(0, at);
        const covered = at < 0 ? undefined : r.stdout.slice(at).split('\n').filter((l) => /^[0-9a-f]{64}$/.test(l));
        return { ...parseCheck(this.info.name, r.exitCode, `${checkOut}\n${r.stderr}`), ...(covered ? { covered } : {}) };
      } catch (e) {
        return { status: 'error', detail: `vault '${this.info.name}': cannot run restic check on ${this.where()}: ${isRubiconError(e) ? e.message : String(e)}`, final: false };
      }
    })();
    const mine = this.repoCheck;
    void mine.then((c) => {
      if (!c.final && this.repoCheck === mine) this.repoCheck = undefined;
    });
    return mine;
  }

  /**
   * With `manifestHash`, the artifact's manifest document is checked too:
   * its snapshot must be among those listed right before the repository
   * check, whose --read-data then verified every blob they hold (so present
   * means intact, as a dump and hash would show, without one more restic
   * run).
   */
  async checkCopy(_run: VaultStepRun, o: { artifactId: string; locator: string; entries: readonly ManifestEntry[]; stepId: string; srcDir?: string; manifestHash?: string }): Promise<ObjectCheck> {
    if (!/^[0-9a-f]{64}$/.test(o.locator)) return { status: 'error', detail: `vault '${this.info.name}': "${o.locator}" is not a restic snapshot id` };
    let docRef: DocRef | undefined;
    let doc: ObjectCheck = { status: 'ok' };
    if (o.manifestHash) {
      try {
        docRef = await this.findDoc(o.manifestHash);
        if (!docRef) doc = { status: 'missing', detail: `vault '${this.info.name}' has no manifest document ${o.manifestHash.slice(0, 12)}… for ${o.artifactId} (no snapshot tagged rubicon-doc:${o.manifestHash.slice(0, 12)}…)` };
      } catch (e) {
        doc = { status: 'error', detail: `vault '${this.info.name}': cannot look for the manifest of ${o.artifactId}: ${isRubiconError(e) ? e.message : String(e)}` };
      }
    }
    // The snapshot's listing is read while the repository check runs (both take restic's shared lock): the
    // listing's own restic start (key derivation, index) overlaps the check instead of following it.
    const lsRun = this.onHost(RESTIC_CMD_SCRIPT, ['ls', '--json', o.locator], { maxOutputBytes: LS_MAX, timeoutMs: 3600_000 });
    lsRun.catch(() => undefined);
    const repo = await this.checkRepository([o.locator, ...(docRef ? [docRef.id] : [])]);
    // Present when the check ran: its snapshot file was listed right before the check read every blob.
    if (docRef && repo.covered && !repo.covered.some((x) => x.startsWith(docRef.id))) {
      doc = { status: 'missing', detail: `vault '${this.info.name}': the manifest document of ${o.artifactId} is no longer in the repository` };
    }
    let listing: ObjectCheck;
    try {
      const r = await lsRun;
      if (r.exitCode !== 0) {
        if (/no matching ID found|invalid id/i.test(r.stderr)) {
          listing = { status: 'missing', detail: `vault '${this.info.name}' has no snapshot ${o.locator.slice(0, 8)} for ${o.artifactId}` };
        } else {
          const e = await this.resticFailure(this.vaultHost, r, `listing snapshot ${o.locator.slice(0, 8)}`);
          listing = { status: 'error', detail: e.message };
        }
      } else {
        const { snapshot, nodes } = parseLsJson(r.stdout);
        const tagged = snapshot?.tags.find((t) => t.startsWith('source:'));
        const recorded = tagged ? decodeTag(tagged.slice('source:'.length)) : undefined;
        const srcDir = o.srcDir ?? recorded;
        if (!srcDir) listing = { status: 'error', detail: `vault '${this.info.name}': snapshot ${o.locator.slice(0, 8)} does not say which folder it holds, and none was given` };
        else if (recorded !== undefined && o.srcDir !== undefined && recorded !== o.srcDir) {
          listing = { status: 'error', detail: `vault '${this.info.name}': snapshot ${o.locator.slice(0, 8)} holds ${recorded}, not ${o.srcDir}` };
        } else listing = compareListing(this.info.name, o.artifactId, srcDir, nodes, o.entries);
      }
    } catch (e) {
      listing = { status: 'error', detail: `vault '${this.info.name}': cannot list snapshot ${o.locator.slice(0, 8)} on ${this.where()}: ${isRubiconError(e) ? e.message : String(e)}` };
    }
    return worst(worst({ status: repo.status, ...(repo.detail ? { detail: repo.detail } : {}) }, listing), doc);
  }

  async restoreTo(run: VaultStepRun, on: Machine, grant: Grant, o: { artifactId: string; locator: string; dest: string; stepId: string; srcDir: string; signal?: AbortSignal }): Promise<void> {
    assertGrant(grant, this.info.name, on, 'read', (this.deps.now ?? (() => new Date()))());
    if (!/^[0-9a-f]{64}$/.test(o.locator)) throw new RubiconError('INTERNAL', `vault '${this.info.name}': "${o.locator}" is not a restic snapshot id`);
    if (!o.dest.startsWith('/') || o.dest.replace(/\/+$/, '') === '') throw new RubiconError('INTERNAL', `restore destination ${o.dest} must be an absolute folder other than /`);
    if (!o.srcDir.startsWith('/')) throw new RubiconError('INTERNAL', `srcDir ${o.srcDir} is not absolute`);
    await this.toolVersion(on);
    const dest = o.dest.replace(/\/+$/, '');
    const src = o.srcDir === '/' ? '/' : o.srcDir.replace(/\/+$/, '');
    // --no-lock: a read grant's sftp is read-only (internal-sftp -R), so restic cannot write a lock file.
    const argv = ['sh', '-c', RESTORE_SCRIPT, 'rubicon', o.locator, src, dest, ...this.resticArgv(grant, '--no-cache', '--no-lock')];
    const r = await runAttempt(run, on, `${o.stepId}/restic-restore`, { argv, env: grant.env }, `restore of ${o.artifactId} from vault ${this.info.name}`, {
      accept: (x) => x.exitCode === 0,
      signal: o.signal,
      maxOutputBytes: STEP_OUTPUT_MAX,
    });
    if (r.exitCode === 90) throw new RubiconError('PRECONDITION_FAILED', `cannot restore ${o.artifactId} to ${dest} on ${on.name}: the folder is not empty`, { hint: 'restore into a new or empty folder' });
    if (r.exitCode === 92) throw new RubiconError('VAULT_CORRUPT', `vault '${this.info.name}': snapshot ${o.locator.slice(0, 8)} has no folder ${src}`, { details: { vault: this.info.name } });
    if (r.exitCode !== 0) throw await this.resticFailure(on, r, `restoring artifact ${o.artifactId} to ${dest}`);
  }

  // ---- documents, stored as snapshots in the repository ----

  /** Document snapshots by SHA-256 (the path is /docs/<sha256> whichever way the snapshot was made). */
  private async docIndex(refresh: boolean): Promise<Map<string, DocRef>> {
    const snaps = refresh ? await this.refreshSnapshots() : await this.knownSnapshots();
    return newestByTag(snaps, 'rubicon-doc:', (sha) => (isSha256Hex(sha) ? `/docs/${sha}` : undefined));
  }

  /** A cache miss reads the repository's list again: a document is never "absent" on the cache's word. */
  private async findDoc(sha256: string): Promise<DocRef | undefined> {
    if (!isSha256Hex(sha256)) throw new RubiconError('ARGUMENTS_INVALID', `vault '${this.info.name}': '${sha256}' is not a lower-case hex SHA-256 digest`);
    return (await this.docIndex(false)).get(sha256) ?? (await this.docIndex(true)).get(sha256);
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.findDoc(sha256)) !== undefined;
  }

  private async dump(refs: { id: string; path: string }[]): Promise<Map<string, Uint8Array>> {
    const out = new Map<string, Uint8Array>();
    if (refs.length === 0) return out;
    const r = await this.onHost(DUMP_SCRIPT, refs.flatMap((d) => [d.id, d.path]), { maxOutputBytes: DOC_MAX });
    if (r.exitCode !== 0) {
      if (/ciphertext verification failed|decrypting blob|does not match|Pack ID/i.test(r.stderr)) {
        throw new RubiconError('VAULT_CORRUPT', `vault '${this.info.name}': a document in the repository on ${this.where()} cannot be read back (restic: damaged data)`, { details: { vault: this.info.name } });
      }
      throw await this.resticFailure(this.vaultHost, r, 'reading documents');
    }
    for (const line of r.stdout.split('\n')) {
      const [id, b64 = ''] = line.split(' ');
      if (id) out.set(id, Buffer.from(b64, 'base64'));
    }
    return out;
  }

  async *read(sha256: string): AsyncIterable<Uint8Array> {
    const ref = await this.findDoc(sha256);
    if (!ref) {
      throw new RubiconError('VAULT_MISSING_OBJECT', `vault '${this.info.name}' has no document ${sha256} (no snapshot tagged rubicon-doc:${sha256.slice(0, 12)}…); restore from another vault or capture the item again`, {
        details: { vault: this.info.name, object: sha256 },
      });
    }
    const bytes = (await this.dump([ref])).get(ref.id) ?? new Uint8Array();
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) {
      throw new RubiconError('VAULT_CORRUPT', `vault '${this.info.name}': document ${sha256} is corrupt (its content hashes to ${actual}); restore from another vault or capture the item again`, {
        details: { vault: this.info.name, object: sha256, actual },
      });
    }
    for (let off = 0; off < bytes.byteLength; off += READ_CHUNK) yield bytes.subarray(off, Math.min(bytes.byteLength, off + READ_CHUNK));
  }

  /** Dumps the document on the vault host and hashes it there (sha256sum). Never throws for a bad copy. */
  async check(sha256: string, expectedSize?: number): Promise<ObjectCheck> {
    try {
      if (!isSha256Hex(sha256)) return { status: 'error', detail: `'${sha256}' is not a SHA-256 hex digest` };
      const ref = await this.findDoc(sha256);
      if (!ref) return { status: 'missing', detail: `document ${sha256} is missing from vault '${this.info.name}'` };
      const r = await this.onHost(HASH_DOC_SCRIPT, [ref.id, ref.path]);
      if (r.exitCode !== 0) return { status: 'checksum-mismatch', detail: `vault '${this.info.name}': restic cannot read document ${sha256} back on ${this.where()}${toolLines(r.stderr, RESTIC_SHAPES)}` };
      return gradeDocLines(this.info.name, sha256, expectedSize, r.stdout, this.vaultHost.name);
    } catch (e) {
      return { status: 'error', detail: `vault '${this.info.name}': ${isRubiconError(e) ? e.message : String(e)}` };
    }
  }

  createWriter(): Promise<ObjectWriter> {
    return Promise.reject(
      new RubiconError('INTERNAL', `vault '${this.info.name}' (restic) takes file trees from restic on the machine where the data is (ingest), and documents through putBytes; it does not stream objects through Rubicon`),
    );
  }

  /**
   * Stores documents as ONE snapshot (PUT_DOCS_SCRIPT: one restic run on the
   * vault host), tagged with every document's tag, and adds it to the
   * snapshot cache. restic's own summary must count exactly these files and
   * bytes. Idempotent in effect: storing a document again makes a duplicate
   * snapshot, and lookups take the newest.
   */
  private async putDocs(docs: { file: string; data: Uint8Array; tags: string[] }[]): Promise<void> {
    if (docs.length === 0) return;
    await this.ensureInitialized();
    const tags = docs.flatMap((d) => d.tags);
    const args = [...docs.flatMap((d) => [d.file, String(d.data.byteLength), '-']), '--', '--host', 'rubicon', ...tags.flatMap((t) => ['--tag', t])];
    const what = docs.map((d) => d.file).join(' and ');
    const r = await this.onHost(PUT_DOCS_SCRIPT, args, { rest: Buffer.concat(docs.map((d) => Buffer.from(d.data))) });
    if (r.exitCode !== 0) throw await this.resticFailure(this.vaultHost, r, `storing ${what}`);
    const at = r.stdout.lastIndexOf('RUBICON-SNAPSHOTS\n');
    const s = parseBackupJson(at < 0 ? r.stdout : r.stdout.slice(0, at)).summary;
    const bytes = docs.reduce((n, d) => n + d.data.byteLength, 0);
    if (!s || s.files !== docs.length || s.bytes !== bytes) {
      throw new RubiconError('VAULT_IO', `vault '${this.info.name}': restic did not report storing ${what} (${docs.length} file(s), ${bytes} bytes) on ${this.where()}`);
    }
    const files = at < 0 ? [] : r.stdout.slice(at).split('\n').filter((l) => /^[0-9a-f]{64}$/.test(l) && l.startsWith(s.snapshotId));
    const now = new Date().toISOString();
    // The full id when the listing names exactly one; else the summary's short id (restic accepts a unique prefix).
    const id = files.length === 1 ? files[0]! : s.snapshotId;
    this.snaps?.set(id, { id, time: now, tags, paths: docs.map((d) => `/${d.file}`) });
  }

  /** Idempotent: a document the cache knows is present is not stored again (a cached absence only ever leads to writing). */
  async putBytes(data: Uint8Array): Promise<string> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    if ((await this.docIndex(false)).has(sha256)) return sha256;
    await this.putDocs([{ file: `docs/${sha256}`, data, tags: ['rubicon-doc', `rubicon-doc:${sha256}`] }]);
    return sha256;
  }

  /** The index entry to write for `entry`, or undefined when the newest stored one is the same entry (FilesystemVault's rule). */
  private async indexToWrite(entry: ArtifactIndexEntry): Promise<{ file: string; data: Uint8Array; tags: string[] } | undefined> {
    const { doc, bytes } = indexDocument(this.info.name, entry);
    const name = artifactName(entry.artifactId);
    const current = (await this.indexSnapshots(false)).get(name);
    if (current) {
      const stored = (await this.dump([current]).catch(() => new Map<string, Uint8Array>())).get(current.id);
      if (stored) {
        try {
          if (sameIndexEntry(parseIndexDocument(this.info.name, current.path, stored), doc)) return undefined;
        } catch {
          // unreadable: write a new one (the newest snapshot wins)
        }
      }
    }
    return { file: `index/${name}.json`, data: bytes, tags: ['rubicon-index', `rubicon-index:${name}`] };
  }

  async putArtifactIndex(entry: ArtifactIndexEntry): Promise<void> {
    const w = await this.indexToWrite(entry);
    if (w) await this.putDocs([w]);
  }

  /**
   * An artifact's manifest and its index entry in ONE restic run (one
   * snapshot holding /docs/<sha256> and /index/<name>.json). Same rules as
   * putBytes then putArtifactIndex: what is already there is not written.
   */
  async putArtifactDocuments(manifest: Uint8Array, entry: ArtifactIndexEntry): Promise<string> {
    const sha256 = createHash('sha256').update(manifest).digest('hex');
    const docs: { file: string; data: Uint8Array; tags: string[] }[] = [];
    if (!(await this.docIndex(false)).has(sha256)) docs.push({ file: `docs/${sha256}`, data: manifest, tags: ['rubicon-doc', `rubicon-doc:${sha256}`] });
    const w = await this.indexToWrite(entry);
    if (w) docs.push(w);
    await this.putDocs(docs);
    return sha256;
  }

  /** The newest index snapshot per artifact name (from the cache unless `refresh`). */
  private async indexSnapshots(refresh: boolean): Promise<Map<string, DocRef>> {
    const snaps = refresh ? await this.refreshSnapshots() : await this.knownSnapshots();
    return newestByTag(snaps, 'rubicon-index:', (name) => (/^[A-Za-z0-9._%~-]+$/.test(name) ? `/index/${name}.json` : undefined));
  }

  /** Read fresh from the repository: a reader of the vault alone (verify, the proving ground) must see every writer's entries. */
  async listArtifacts(): Promise<ArtifactIndexEntry[]> {
    const refs = [...(await this.indexSnapshots(true)).values()];
    const docs = await this.dump(refs);
    return sortIndex(refs.map((ref) => parseIndexDocument(this.info.name, `${ref.path} in snapshot ${ref.id.slice(0, 8)}`, docs.get(ref.id) ?? new Uint8Array())));
  }

  /**
   * A run document as one snapshot holding /runs/<runId>/<name>.json, tagged
   * `rubicon-run:<runId>:<name>`. Write-once: a name the repository already
   * holds (read fresh) is not stored again.
   */
  async putRunDocument(runId: string, name: string, data: Uint8Array): Promise<void> {
    const file = runDocKey(runId, name);
    const tag = `rubicon-run:${runId}:${name}`;
    if ((await this.refreshSnapshots()).some((x) => x.tags.includes(tag))) return;
    await this.putDocs([{ file, data, tags: ['rubicon-run', tag] }]);
  }

  /** Read fresh from the repository; the oldest snapshot per name (write-once: a later duplicate does not replace it). */
  async listRunDocuments(runId: string): Promise<RunDocument[]> {
    const prefix = `rubicon-run:${runId}:`;
    const refs = new Map<string, { id: string; path: string; time: string }>();
    for (const x of await this.refreshSnapshots()) {
      for (const t of x.tags) {
        if (!t.startsWith(prefix)) continue;
        const name = t.slice(prefix.length);
        if (!/^[a-z0-9][a-z0-9-]{0,127}$/.test(name)) continue;
        const cur = refs.get(name);
        if (!cur || x.time < cur.time) refs.set(name, { id: x.id, path: `/${runDocKey(runId, name)}`, time: x.time });
      }
    }
    const docs = await this.dump([...refs.values()]);
    return [...refs.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, ref]) => ({ name, where: `${ref.path} in snapshot ${ref.id.slice(0, 8)}`, data: docs.get(ref.id) ?? new Uint8Array() }));
  }

  /** Flushes the vault host's filesystem that holds the repository. */
  async sync(): Promise<void> {
    const r = await this.vaultHost.exec({ argv: ['sh', '-c', 'sync -f -- "$1" 2>/dev/null || sync', 'rubicon', this.settings.path] }, { timeoutMs: 600_000 });
    if (r.exitCode !== 0) throw new RubiconError('VAULT_IO', `vault '${this.info.name}': flushing ${this.settings.path} on ${this.where()} failed: ${r.stderr.trim().slice(0, 200)}`);
  }
}

/** The restic vault for a runbook entry. Registered by the composition root under `kind: restic`. */
export function createResticVault(settings: ResticVaultSettings, deps: ResticVaultDeps): ResticVault {
  return new ResticVault(settings, deps);
}
