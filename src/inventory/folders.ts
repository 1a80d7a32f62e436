import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Item } from '../core/types.ts';
import { walk } from '../files/walk.ts';

/**
 * Folder discovery on a local target: every folder at `depth` under each
 * discovery root that holds files is a data folder, declared or not. Facts
 * (bytes, files, last change) and references from the application's text
 * configuration explain why an undeclared folder matters. Read-only.
 */
export interface FolderDiscoveryOptions {
  targetRoot: string;
  roots: string[];
  depth: number;
  exclude: string[];
  declared: string[];
  /** Files owned by other items (database files): left out of folder facts and captures. */
  ownedFiles: string[];
}

const TEXT_CONFIG = /\.(ini|cfg|conf|config|json|xml|ya?ml|txt|properties|bat|cmd|ps1)$/i;
const MAX_CONFIG_BYTES = 1 << 20;

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function foldersAtDepth(abs: string, rel: string, depth: number): Promise<string[]> {
  if (depth === 0) return [rel];
  let entries;
  try {
    entries = await readdir(abs, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (!e.isDirectory()) continue;
    out.push(...(await foldersAtDepth(path.join(abs, e.name), rel === '.' ? e.name : `${rel}/${e.name}`, depth - 1)));
  }
  return out;
}

const within = (child: string, parent: string) => parent === '.' || child === parent || child.startsWith(parent + '/');

/** The exclusions for one folder item: nested folder items and owned files, relative to the folder. */
export function folderExcludes(folder: string, allFolders: string[], owned: string[], exclude: string[]): string[] {
  const rel = (p: string) => (folder === '.' ? p : p.slice(folder.length + 1));
  return [...allFolders.filter((f) => f !== folder && within(f, folder)), ...owned, ...exclude]
    .filter((p) => within(p, folder) && p !== folder)
    .map(rel);
}

export async function discoverFolders(o: FolderDiscoveryOptions): Promise<Item[]> {
  const candidates = new Set<string>();
  for (const root of o.roots) {
    for (const f of await foldersAtDepth(path.join(o.targetRoot, root), root, o.depth)) candidates.add(f);
  }
  // A declared folder covers what lies inside it.
  for (const d of o.declared) for (const c of [...candidates]) if (c !== d && within(c, d)) candidates.delete(c);
  for (const d of o.declared) candidates.add(d);
  for (const x of o.exclude) for (const c of [...candidates]) if (within(c, x)) candidates.delete(c);
  const all = [...candidates].sort();

  const items: Item[] = [];
  for (const folder of all) {
    const declared = o.declared.includes(folder);
    const abs = path.join(o.targetRoot, folder);
    if (!(await isDir(abs))) {
      if (declared) {
        items.push({
          id: `folder:${folder}`,
          kind: 'folder',
          name: folder,
          declared: true,
          discovered: false,
          location: folder,
          facts: { missing: true },
          why: ['declared in the runbook but not found on the target'],
          methods: [],
        });
      }
      continue;
    }
    let bytes = 0;
    let files = 0;
    let last = 0;
    for await (const f of walk(abs, { exclude: folderExcludes(folder, all, o.ownedFiles, o.exclude) })) {
      bytes += f.size;
      files += 1;
      last = Math.max(last, f.mtimeMs);
    }
    if (files === 0 && !declared) continue;
    items.push({
      id: `folder:${folder}`,
      kind: 'folder',
      name: folder,
      declared,
      discovered: true,
      location: folder,
      facts: { bytes, files, lastChange: last ? new Date(last).toISOString() : null },
      why: [],
      methods: [],
    });
  }
  await addReferences(o.targetRoot, o.roots, items);
  for (const it of items) {
    if (it.facts.missing) continue;
    const f = it.facts;
    it.why.unshift(
      `${f.files} files, ${formatBytes(Number(f.bytes))}${f.lastChange ? `, last changed ${String(f.lastChange).slice(0, 10)}` : ''}`,
    );
    if (!it.declared) it.why.push('not in the runbook: found by discovery, captured anyway');
  }
  return items;
}

/** Finds mentions of each folder in the application's small text config files ("referenced by ehr/A/app.ini line 4"). */
async function addReferences(targetRoot: string, roots: string[], items: Item[]): Promise<void> {
  const needles = items.map((it) => ({
    it,
    re: new RegExp(`(^|[\\\\/"'=\\s])${it.location.split('/').map(escapeRe).join('[\\\\/]')}([\\\\/"'\\s]|$)`, 'i'),
  }));
  for (const root of roots) {
    for await (const f of walk(path.join(targetRoot, root))) {
      if (!TEXT_CONFIG.test(f.path) || f.size > MAX_CONFIG_BYTES) continue;
      const rel = root === '.' ? f.path : `${root}/${f.path}`;
      const text = await readSmall(path.join(targetRoot, rel), f.size);
      if (text === undefined) continue;
      const lines = text.split(/\r?\n/);
      for (const { it, re } of needles) {
        if (within(rel, it.location)) continue; // a folder's own files do not explain it
        const i = lines.findIndex((l) => re.test(l));
        if (i >= 0 && it.why.length < 6) it.why.push(`referenced by ${rel} line ${i + 1}`);
      }
    }
  }
}

async function readSmall(p: string, size: number): Promise<string | undefined> {
  const fh = await open(p, 'r');
  try {
    const buf = Buffer.alloc(size);
    await fh.read(buf, 0, size, 0);
    if (buf.includes(0)) return undefined; // binary
    return buf.toString('utf8');
  } finally {
    await fh.close();
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
