import path from 'node:path';
import type { Item } from '../core/types.ts';
import type { Machine } from '../machines/machine.ts';
import { listTree, type TreeEntry } from '../machines/tree.ts';
import { folderExcludes, formatBytes } from './folders.ts';

/**
 * Folder discovery on a remote Linux target: the same rules as the local
 * discovery (src/inventory/folders.ts) — every folder at `depth` under a
 * discovery root that holds files is a data folder, declared or not; facts
 * and references from small text config files say why it matters — but the
 * listing runs on the machine (one `find` per root) and only small config
 * files are read back. Read-only.
 */
export interface RemoteFolderDiscovery {
  machine: Machine;
  /** The target's root (absolute on the machine); item locations are relative to it. */
  root: string;
  roots: string[];
  depth: number;
  exclude: string[];
  declared: string[];
  ownedFiles: string[];
}

const TEXT_CONFIG = /\.(ini|cfg|conf|config|json|xml|ya?ml|txt|properties|bat|cmd|ps1|sh|env)$/i;
const MAX_CONFIG_BYTES = 1 << 20;
const MAX_CONFIG_FILES = 200;

const within = (child: string, parent: string) => parent === '.' || child === parent || child.startsWith(parent + '/');
const join = (a: string, b: string) => (a === '.' ? b : `${a}/${b}`);

export async function discoverFoldersRemote(o: RemoteFolderDiscovery): Promise<Item[]> {
  // One listing per discovery root, reused for candidates, facts and config references.
  const listings = new Map<string, { files: TreeEntry[]; dirs: string[] }>();
  for (const r of o.roots) {
    const l = await listTree(o.machine, path.posix.join(o.root, r), { exclude: o.exclude.filter((x) => within(x, r)).map((x) => (r === '.' ? x : x.slice(r.length + 1))) });
    listings.set(r, { files: l.files.map((f) => ({ ...f, path: join(r, f.path) })), dirs: l.dirs.map((d) => join(r, d)) });
  }
  const allFiles = [...listings.values()].flatMap((l) => l.files);
  const allDirs = new Set([...listings.values()].flatMap((l) => l.dirs));
  const candidates = new Set<string>();
  for (const r of o.roots) {
    for (const d of listings.get(r)!.dirs) {
      const depth = (r === '.' ? d : d.slice(r.length + 1)).split('/').length;
      if (depth === o.depth) candidates.add(d);
    }
  }
  for (const d of o.declared) for (const c of [...candidates]) if (c !== d && within(c, d)) candidates.delete(c);
  for (const d of o.declared) candidates.add(d);
  for (const x of o.exclude) for (const c of [...candidates]) if (within(c, x)) candidates.delete(c);
  const all = [...candidates].sort();

  const items: Item[] = [];
  for (const folder of all) {
    const declared = o.declared.includes(folder);
    let files: TreeEntry[];
    if (!allDirs.has(folder) && !o.roots.includes(folder)) {
      // A declared folder outside the roots is listed on its own.
      const l = await listTree(o.machine, path.posix.join(o.root, folder));
      if (l.missing) {
        if (declared) {
          items.push({ id: `folder:${folder}`, kind: 'folder', name: folder, declared: true, discovered: false, location: folder, facts: { missing: true }, why: ['declared in the runbook but not found on the target'], methods: [] });
        }
        continue;
      }
      files = l.files.map((f) => ({ ...f, path: join(folder, f.path) }));
    } else {
      files = allFiles.filter((f) => within(f.path, folder));
    }
    const ex = folderExcludes(folder, all, o.ownedFiles, o.exclude).map((x) => join(folder, x));
    const mine = files.filter((f) => !ex.some((x) => within(f.path, x)));
    if (mine.length === 0 && !declared) continue;
    const bytes = mine.reduce((n, f) => n + f.size, 0);
    const last = mine.reduce((n, f) => Math.max(n, f.mtimeMs), 0);
    items.push({
      id: `folder:${folder}`,
      kind: 'folder',
      name: folder,
      declared,
      discovered: true,
      location: folder,
      facts: { bytes, files: mine.length, lastChange: last ? new Date(last).toISOString() : null },
      why: [],
      methods: [],
    });
  }
  await addReferences(o.machine, o.root, allFiles, items);
  for (const it of items) {
    if (it.facts.missing) continue;
    const f = it.facts;
    it.why.unshift(`${f.files} files, ${formatBytes(Number(f.bytes))}${f.lastChange ? `, last changed ${String(f.lastChange).slice(0, 10)}` : ''}`);
    if (!it.declared) it.why.push('not in the runbook: found by discovery, captured anyway');
  }
  return items;
}

async function addReferences(machine: Machine, root: string, files: TreeEntry[], items: Item[]): Promise<void> {
  const needles = items.map((it) => ({
    it,
    re: new RegExp(`(^|[\\\\/"'=\\s])${it.location.split('/').map(escapeRe).join('[\\\\/]')}([\\\\/"'\\s]|$)`, 'i'),
  }));
  const configs = files.filter((f) => TEXT_CONFIG.test(f.path) && f.size <= MAX_CONFIG_BYTES).slice(0, MAX_CONFIG_FILES);
  for (const f of configs) {
    let text: string;
    try {
      const bytes = await machine.readSmall(path.posix.join(root, f.path), MAX_CONFIG_BYTES);
      if (bytes.includes(0)) continue;
      text = Buffer.from(bytes).toString('utf8');
    } catch {
      continue; // vanished or unreadable: it explains nothing
    }
    const lines = text.split(/\r?\n/);
    for (const { it, re } of needles) {
      if (within(f.path, it.location)) continue;
      const i = lines.findIndex((l) => re.test(l));
      if (i >= 0 && it.why.length < 6) it.why.push(`referenced by ${f.path} line ${i + 1}`);
    }
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
