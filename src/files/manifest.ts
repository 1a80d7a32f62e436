import { createHash } from 'node:crypto';
import { RubiconError } from '../core/errors.ts';
import { comparePaths, isSha256Hex, relativePathProblem } from '../core/paths.ts';
import type { Manifest, ManifestEntry, ManifestNode, ManifestRoot } from '../core/types.ts';
import type { VaultReader } from '../vaults/vault.ts';
import { msFromNs, nodeKey } from './walk.ts';

/**
 * Manifests: the content-hash list of an artifact, stored in every vault as
 * a content-addressed object.
 *
 * Two versions, both read everywhere:
 * - **1**: one line of JSON, `{"version":1,...,"entries":[...]}`: regular
 *   files only (path, size, mtimeMs, mode, sha256). Database artifacts
 *   (captureFiles) are still written this way, so their hashes do not move;
 *   file trees captured before version 2 stay readable and re-encode to
 *   the very same bytes.
 * - **2** (file trees): JSON Lines. A header line (version, ids, format,
 *   the root folder's metadata), then one line per record in nodeKey order
 *   (a folder sorts as `path/`, so it comes right before its content):
 *   files with owner, exact mtime, inode and hard links, and folders,
 *   symlinks and FIFOs. A reader streams it line by line (drift and delta
 *   never hold it whole).
 *
 * Contract: encoding is deterministic: the same logical manifest always gives
 * the same bytes and so the same hash (fixed key order, records sorted, no
 * timestamps but the files' own), so a redo of a capture after a crash gives
 * the same manifest hash. Parsing checks every field and path by hand (no
 * schema library: a fresh-process drift scan pays for every millisecond) and
 * throws VAULT_CORRUPT naming the field.
 */

export type ManifestRecord = ManifestEntry | ManifestNode;
export type ManifestHeader = Omit<Manifest, 'entries' | 'nodes'>;

export function isNode(r: ManifestRecord): r is ManifestNode {
  return 'type' in r;
}

export function recordKey(r: ManifestRecord): string {
  return isNode(r) ? nodeKey(r.path, r.type) : r.path;
}

/** Sorts entries by path (comparePaths); throws INTERNAL on a duplicate path. Pure. */
export function sortEntries(entries: readonly ManifestEntry[]): ManifestEntry[] {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path));
  for (let i = 1; i < sorted.length; i++) {
    if ((sorted[i] as ManifestEntry).path === (sorted[i - 1] as ManifestEntry).path) {
      throw new RubiconError('INTERNAL', `manifest has the path '${(sorted[i] as ManifestEntry).path}' twice`);
    }
  }
  return sorted;
}

/** The records of a manifest (files and nodes) merged in nodeKey order. Pure. */
export function* manifestRecords(m: Manifest): Generator<ManifestRecord> {
  const files = m.entries;
  const nodes = m.nodes ?? [];
  let i = 0;
  let j = 0;
  while (i < files.length || j < nodes.length) {
    const f = files[i];
    const n = nodes[j];
    if (n === undefined || (f !== undefined && comparePaths(f.path, nodeKey(n.path, n.type)) < 0)) {
      yield f as ManifestEntry;
      i++;
    } else {
      yield n;
      j++;
    }
  }
}

// ---------------------------------------------------------------- encoding

function v1Head(h: ManifestHeader): string {
  return `{"version":1,"artifactId":${JSON.stringify(h.artifactId)},"itemId":${JSON.stringify(h.itemId)},"method":${JSON.stringify(h.method)}${
    h.format !== undefined ? `,"format":${JSON.stringify(h.format)}` : ''
  },"entries":[`;
}

function v1Entry(e: ManifestEntry): string {
  return JSON.stringify({ path: e.path, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, sha256: e.sha256 });
}

function metaFields(o: Record<string, unknown>, m: ManifestRoot): void {
  o.mode = m.mode;
  if (m.uid !== undefined) o.uid = m.uid;
  if (m.gid !== undefined) o.gid = m.gid;
  if (m.mtimeNs !== undefined) o.mtimeNs = m.mtimeNs;
  else o.mtimeMs = m.mtimeMs;
}

function v2Header(h: ManifestHeader): string {
  const o: Record<string, unknown> = { version: 2, artifactId: h.artifactId, itemId: h.itemId, method: h.method };
  if (h.format !== undefined) o.format = h.format;
  if (h.root !== undefined) {
    const r: Record<string, unknown> = {};
    metaFields(r, h.root);
    o.root = r;
  }
  return `${JSON.stringify(o)}\n`;
}

/** One version-2 record line (fixed key order). */
export function encodeRecord(r: ManifestRecord): string {
  if (!isNode(r)) {
    // The hot case, by hand: the same text JSON.stringify gives for the object below (numbers are integers, sha256 is hex, mtimeNs digits).
    let line = `{"path":${JSON.stringify(r.path)},"size":${r.size},"mode":${r.mode}`;
    if (r.uid !== undefined) line += `,"uid":${r.uid}`;
    if (r.gid !== undefined) line += `,"gid":${r.gid}`;
    line += r.mtimeNs !== undefined ? `,"mtimeNs":"${r.mtimeNs}"` : `,"mtimeMs":${JSON.stringify(r.mtimeMs)}`;
    if (r.ino !== undefined) line += `,"ino":${r.ino}`;
    line += `,"sha256":"${r.sha256}"`;
    if (r.link !== undefined) line += `,"link":${JSON.stringify(r.link)}`;
    return `${line}}\n`;
  }
  const o: Record<string, unknown> = { path: r.path, type: r.type };
  if (r.type === 'symlink') o.target = r.target ?? '';
  metaFields(o, r);
  return `${JSON.stringify(o)}\n`;
}

/**
 * Builds manifest bytes piece by piece (records must come in nodeKey order;
 * version 1 takes files only). `push` returns text to append; nothing is held.
 */
export class ManifestEncoder {
  readonly version: 1 | 2;
  private first = true;
  private lastKey: string | undefined;
  constructor(version: 1 | 2) {
    this.version = version;
  }
  head(h: ManifestHeader): string {
    return this.version === 1 ? v1Head(h) : v2Header(h);
  }
  push(r: ManifestRecord): string {
    const key = recordKey(r);
    if (this.lastKey !== undefined && comparePaths(this.lastKey, key) >= 0) {
      throw new RubiconError('INTERNAL', `manifest record '${r.path}' is out of order or twice (after '${this.lastKey}')`);
    }
    this.lastKey = key;
    if (this.version === 2) return encodeRecord(r);
    if (isNode(r)) throw new RubiconError('INTERNAL', `a version-1 manifest cannot hold the ${r.type} '${r.path}'`);
    const s = this.first ? v1Entry(r) : `,${v1Entry(r)}`;
    this.first = false;
    return s;
  }
  end(): string {
    return this.version === 1 ? ']}\n' : '';
  }
}

/** Deterministic bytes of a manifest (version 1 or 2 as `m.version` says). */
export function encodeManifest(m: Manifest): Uint8Array {
  const enc = new ManifestEncoder(m.version);
  const parts = [enc.head(m)];
  if (m.version === 1) {
    if (m.nodes?.length || m.root) throw new RubiconError('INTERNAL', `manifest of '${m.artifactId}' has folders or root metadata but is version 1`);
    for (const e of sortEntries(m.entries)) parts.push(enc.push(e));
  } else {
    const sorted: Manifest = { ...m, entries: sortEntries(m.entries), nodes: [...(m.nodes ?? [])].sort((a, b) => comparePaths(nodeKey(a.path, a.type), nodeKey(b.path, b.type))) };
    for (const r of manifestRecords(sorted)) parts.push(enc.push(r));
  }
  parts.push(enc.end());
  return new TextEncoder().encode(parts.join(''));
}

export function manifestHashOf(m: Manifest): string {
  return createHash('sha256').update(encodeManifest(m)).digest('hex');
}

// ---------------------------------------------------------------- parsing

class Invalid extends Error {}

/** Where a value sits: a field path, or the number of its line (formatted only when something is wrong: no string per record). */
type Where = string | number;

function at(where: Where): string {
  return typeof where === 'number' ? `line ${where}` : where;
}

function fail(where: Where, msg: string): never {
  throw new Invalid(`${at(where)}: ${msg}`);
}

function str(o: Record<string, unknown>, k: string, where: Where): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0) fail(`${at(where)}.${k}`, 'must be a non-empty string');
  return v;
}

function int(o: Record<string, unknown>, k: string, where: Where, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) fail(`${at(where)}.${k}`, `must be a whole number from 0 to ${max}`);
  return v;
}

function optInt(o: Record<string, unknown>, k: string, where: Where): number | undefined {
  return o[k] === undefined ? undefined : int(o, k, where);
}

function checkKeys(o: Record<string, unknown>, allowed: ReadonlySet<string>, where: Where): void {
  for (const k in o) if (!allowed.has(k)) fail(`${at(where)}.${k}`, 'is not a manifest field');
}

function safePath(o: Record<string, unknown>, k: string, where: Where): string {
  const p = str(o, k, where);
  const problem = relativePathProblem(p);
  if (problem) fail(`${at(where)}.${k}`, `'${p}' ${problem}`);
  return p;
}

const NS = /^-?[0-9]{1,20}$/;

/** Sets mode, mtimeMs (and mtimeNs), uid and gid of `into` from a parsed record (no spreads: this runs once per record). */
function metaInto(into: ManifestRoot, o: Record<string, unknown>, where: Where): void {
  into.mode = int(o, 'mode', where, 0o7777);
  if (o.mtimeNs !== undefined) {
    if (typeof o.mtimeNs !== 'string' || !NS.test(o.mtimeNs)) fail(`${at(where)}.mtimeNs`, 'must be a decimal integer string (nanoseconds)');
    if (o.mtimeMs !== undefined) fail(`${at(where)}.mtimeMs`, 'must not be given together with mtimeNs');
    into.mtimeMs = msFromNs(o.mtimeNs);
    into.mtimeNs = o.mtimeNs;
  } else {
    if (typeof o.mtimeMs !== 'number' || !Number.isFinite(o.mtimeMs)) fail(`${at(where)}.mtimeMs`, 'must be a finite number');
    into.mtimeMs = o.mtimeMs;
  }
  const uid = optInt(o, 'uid', where);
  if (uid !== undefined) into.uid = uid;
  const gid = optInt(o, 'gid', where);
  if (gid !== undefined) into.gid = gid;
}

function meta(o: Record<string, unknown>, where: Where): ManifestRoot {
  const m = { mode: 0, mtimeMs: 0 } as ManifestRoot;
  metaInto(m, o, where);
  return m;
}

const V1_ENTRY = new Set(['path', 'size', 'mtimeMs', 'mode', 'sha256']);
const V1_DOC = new Set(['version', 'artifactId', 'itemId', 'method', 'entries', 'format']);
const V2_HEAD = new Set(['version', 'artifactId', 'itemId', 'method', 'format', 'root']);
const ROOT_KEYS = new Set(['mode', 'uid', 'gid', 'mtimeMs', 'mtimeNs']);
const FILE_KEYS = new Set(['path', 'size', 'mode', 'uid', 'gid', 'mtimeMs', 'mtimeNs', 'ino', 'sha256', 'link']);
const NODE_KEYS = new Set(['path', 'type', 'target', 'mode', 'uid', 'gid', 'mtimeMs', 'mtimeNs']);

function obj(v: unknown, where: Where): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(at(where), 'must be an object');
  return v as Record<string, unknown>;
}

function sha(o: Record<string, unknown>, where: Where): string {
  const v = o.sha256;
  if (typeof v !== 'string' || !isSha256Hex(v)) fail(`${at(where)}.sha256`, 'must be a lower-case hex SHA-256');
  return v;
}

function v1EntryOf(v: unknown, where: Where): ManifestEntry {
  const o = obj(v, where);
  checkKeys(o, V1_ENTRY, where);
  const path = safePath(o, 'path', where);
  const size = int(o, 'size', where);
  if (typeof o.mtimeMs !== 'number' || !Number.isFinite(o.mtimeMs)) fail(`${at(where)}.mtimeMs`, 'must be a finite number');
  return { path, size, mtimeMs: o.mtimeMs, mode: int(o, 'mode', where, 0o7777), sha256: sha(o, where) };
}

function headerOf(o: Record<string, unknown>, version: 1 | 2): ManifestHeader {
  const h: ManifestHeader = { version, artifactId: str(o, 'artifactId', '(root)'), itemId: str(o, 'itemId', '(root)'), method: str(o, 'method', '(root)') };
  if (o.format !== undefined) h.format = str(o, 'format', '(root)');
  if (version === 2 && o.root !== undefined) {
    const r = obj(o.root, 'root');
    checkKeys(r, ROOT_KEYS, 'root');
    h.root = meta(r, 'root');
  }
  return h;
}

/** One version-2 record (a parsed line; `where`: its line number or a field path). */
export function recordOf(v: unknown, where: Where): ManifestRecord {
  const o = obj(v, where);
  const path = safePath(o, 'path', where);
  if (o.type === undefined) {
    checkKeys(o, FILE_KEYS, where);
    const e = { path, size: int(o, 'size', where), mode: 0, mtimeMs: 0, sha256: '' } as ManifestEntry;
    metaInto(e, o, where);
    e.sha256 = sha(o, where);
    const ino = optInt(o, 'ino', where);
    if (ino !== undefined) e.ino = ino;
    if (o.link !== undefined) {
      const link = safePath(o, 'link', where);
      if (comparePaths(link, path) >= 0) fail(`${at(where)}.link`, `'${link}' must be an earlier path`);
      e.link = link;
    }
    return e;
  }
  checkKeys(o, NODE_KEYS, where);
  if (o.type !== 'dir' && o.type !== 'symlink' && o.type !== 'fifo') fail(`${at(where)}.type`, "must be 'dir', 'symlink' or 'fifo'");
  const n = { path, type: o.type, mode: 0, mtimeMs: 0 } as ManifestNode;
  metaInto(n, o, where);
  if (o.type === 'symlink') {
    if (typeof o.target !== 'string' || o.target.length === 0 || o.target.includes('\0')) fail(`${at(where)}.target`, 'must be a non-empty string without NUL');
    n.target = o.target;
  } else if (o.target !== undefined) fail(`${at(where)}.target`, 'is only for symlinks');
  return n;
}

function corrupt(where: string, e: unknown): RubiconError {
  if (e instanceof RubiconError) return e;
  if (!(e instanceof Invalid)) return new RubiconError('VAULT_CORRUPT', `${where} is not a JSON manifest; capture the artifact again`, { cause: e });
  return new RubiconError('VAULT_CORRUPT', `${where} is not a valid Rubicon manifest (${e.message}); capture the artifact again`);
}

/** Bytes of manifest text parsed at a time (strings below V8's large-object size of 128 KiB). */
const PARSE_SLICE = 32 * 1024;

/**
 * Parses a stream of manifest bytes: the header, then records in batches, in
 * order, each checked (path safety, order, every field). Throws VAULT_CORRUPT
 * naming `where` and the field. Version-1 manifests are one line and are
 * parsed whole; version 2 line by line, holding one chunk at a time.
 */
export async function* parseManifestStream(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, where: string): AsyncGenerator<ManifestHeader | ManifestRecord[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  let header: ManifestHeader | undefined;
  let version: 1 | 2 | undefined;
  let lastKey: string | undefined;
  let line = 0;
  const take = (text: string, final: boolean): ManifestRecord[] => {
    if (!final && !text.includes('\n')) {
      // Inside one long line (a version-1 manifest is one line): held, not scanned again slice after slice.
      pending += text;
      return [];
    }
    pending += text;
    const out: ManifestRecord[] = [];
    let start = 0;
    const firstLine = line + 1;
    const lines: string[] = [];
    for (;;) {
      const nl = pending.indexOf('\n', start);
      if (nl === -1) break;
      const l = pending.slice(start, nl);
      start = nl + 1;
      line++;
      if (version === 2) {
        lines.push(l);
        continue;
      }
      if (version === undefined) {
        const doc = obj(JSON.parse(l), '(root)');
        if (doc.version === 1) {
          checkKeys(doc, V1_DOC, '(root)');
          version = 1;
          header = headerOf(doc, 1);
          if (!Array.isArray(doc.entries)) fail('entries', 'must be an array');
          doc.entries.forEach((e: unknown, i: number) => out.push(v1EntryOf(e, `entries.${i}`)));
        } else if (doc.version === 2) {
          checkKeys(doc, V2_HEAD, '(root)');
          version = 2;
          header = headerOf(doc, 2);
        } else fail('version', 'must be 1 or 2');
        continue;
      }
      fail(`line ${line}`, 'a version-1 manifest is one line');
    }
    if (lines.length > 0) {
      // One JSON.parse for the whole chunk (far fewer calls); a bad line is then found line by line, to name it.
      let parsed: unknown[];
      try {
        parsed = JSON.parse(`[${lines.join(',')}]`) as unknown[];
        if (parsed.length !== lines.length) throw new Error('a line holds more than one value');
      } catch {
        parsed = lines.map((l, i) => {
          try {
            return JSON.parse(l) as unknown;
          } catch (e) {
            fail(`line ${firstLine + i}`, `is not JSON (${e instanceof Error ? e.message : String(e)})`);
          }
        });
      }
      const base = line - lines.length + 1;
      for (let i = 0; i < parsed.length; i++) out.push(recordOf(parsed[i], base + i));
    }
    pending = pending.slice(start);
    if (final && pending.length > 0) fail(`line ${line + 1}`, 'does not end with a newline');
    for (const r of out) {
      const key = recordKey(r);
      if (lastKey !== undefined && comparePaths(lastKey, key) >= 0) fail(`path '${r.path}'`, `is out of order or duplicated (after '${lastKey}')`);
      lastKey = key;
    }
    return out;
  };
  let headerSent = false;
  try {
    for await (const chunk of chunks) {
      // In slices: every string made from a slice stays a young-generation object. A 1 MiB piece made strings of
      // 1-2 MiB, which V8 puts in its large-object space, freed only by a full GC: the peak RSS of a drift scan
      // then grew with the manifest (102 -> 223 MiB from 20,000 to 200,000 files, docs/files.md).
      for (let off = 0; off < chunk.byteLength; off += PARSE_SLICE) {
        const recs = take(decoder.decode(chunk.subarray(off, off + PARSE_SLICE), { stream: true }), false);
        if (header && !headerSent) {
          headerSent = true;
          yield header;
        }
        if (recs.length > 0) yield recs;
      }
    }
    const recs = take(decoder.decode(), true);
    if (!header) fail('(root)', 'is empty');
    if (!headerSent) yield header;
    if (recs.length > 0) yield recs;
  } catch (e) {
    throw corrupt(where, e);
  }
}

/** Collects a parsed stream into a Manifest. */
async function collect(stream: AsyncIterable<ManifestHeader | ManifestRecord[]>): Promise<Manifest> {
  let header: ManifestHeader | undefined;
  const entries: ManifestEntry[] = [];
  const nodes: ManifestNode[] = [];
  for await (const part of stream) {
    if (!Array.isArray(part)) header = part;
    else for (const r of part) (isNode(r) ? nodes : entries).push(r as never);
  }
  const h = header as ManifestHeader;
  const m: Manifest = { version: h.version, artifactId: h.artifactId, itemId: h.itemId, method: h.method, entries };
  if (h.format !== undefined) m.format = h.format;
  if (h.version === 2) {
    m.nodes = nodes;
    if (h.root) m.root = h.root;
  }
  return m;
}

/** Parses and checks manifest bytes; `where` names the source in the error (vault and object). */
export function parseManifest(bytes: Uint8Array, where: string): Manifest {
  let header: ManifestHeader;
  const entries: ManifestEntry[] = [];
  const nodes: ManifestNode[] = [];
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw corrupt(where, e);
  }
  try {
    // A whole-document parse first: a version-1 manifest (or a version-2 one with no records) is one JSON document.
    let whole: unknown;
    try {
      whole = JSON.parse(text);
    } catch {
      whole = undefined;
    }
    const lines = whole !== undefined ? [text] : text.split('\n');
    const doc = obj(whole ?? JSON.parse(lines[0] ?? ''), '(root)');
    if (whole === undefined) {
      if (lines.at(-1) !== '') fail(`line ${lines.length}`, 'does not end with a newline');
      lines.pop();
    }
    let lastKey: string | undefined;
    const order = (r: ManifestRecord): void => {
      const key = recordKey(r);
      if (lastKey !== undefined && comparePaths(lastKey, key) >= 0) fail(`path '${r.path}'`, `is out of order or duplicated (after '${lastKey}')`);
      lastKey = key;
    };
    if (doc.version === 1) {
      checkKeys(doc, V1_DOC, '(root)');
      if (lines.length !== 1) fail('line 2', 'a version-1 manifest is one line');
      header = headerOf(doc, 1);
      if (!Array.isArray(doc.entries)) fail('entries', 'must be an array');
      doc.entries.forEach((e: unknown, i: number) => {
        const r = v1EntryOf(e, `entries.${i}`);
        order(r);
        entries.push(r);
      });
    } else if (doc.version === 2) {
      checkKeys(doc, V2_HEAD, '(root)');
      header = headerOf(doc, 2);
      for (let i = 1; i < lines.length; i++) {
        const r = recordOf(JSON.parse(lines[i] as string), i + 1);
        order(r);
        (isNode(r) ? nodes : entries).push(r as never);
      }
    } else fail('version', 'must be 1 or 2');
  } catch (e) {
    throw corrupt(where, e);
  }
  const h = header;
  const m: Manifest = { version: h.version, artifactId: h.artifactId, itemId: h.itemId, method: h.method, entries };
  if (h.format !== undefined) m.format = h.format;
  if (h.version === 2) {
    m.nodes = nodes;
    if (h.root) m.root = h.root;
  }
  return m;
}

/**
 * Streams a manifest object from a vault: header first, then record batches.
 * The vault's read checks the object's hash only at its end, so a consumer
 * must not make anything durable that depends on the records before the
 * stream has ended without error (the capture and drift do not).
 */
export function streamManifest(vault: VaultReader, manifestHash: string): AsyncGenerator<ManifestHeader | ManifestRecord[]> {
  // The parser decodes each chunk before it asks for the next: a reused buffer is enough (no 1 MiB buffer per chunk left for the GC).
  return parseManifestStream(vault.readTransient ? vault.readTransient(manifestHash) : vault.read(manifestHash), `manifest ${manifestHash} in vault '${vault.info.name}'`);
}

/**
 * Reads a manifest object from a vault: hash-checked by the vault's read
 * (VAULT_CORRUPT / VAULT_MISSING_OBJECT), then checked field by field
 * (VAULT_CORRUPT naming the field). Read-only. Holds the whole manifest:
 * drift and delta stream it instead (streamManifest).
 */
export async function readManifest(vault: VaultReader, manifestHash: string): Promise<Manifest> {
  return collect(streamManifest(vault, manifestHash));
}
