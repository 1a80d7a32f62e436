import type { Artifact, ChecklistRow, ChecklistStatus, Copy, Drift, Item, Proof } from '../core/types.ts';
import { currentArtifacts, isMissing, latestCopies, latestProof, parseIsoTime, proofPassed } from '../gate/current.ts';

/**
 * The checklist: declared ∪ discovered items, each with one status and short
 * plain labels. A pure function of recorded facts; the gate decides, the
 * checklist shows.
 *
 * Status, first match wins (precedence missing > failed > drifted > proven >
 * captured > pending):
 * - missing:  declared, not found on the target (discovery marked it missing).
 * - failed:   something failed (a capture, a proof, every copy of an artifact)
 *             and no current artifact is proven with a good copy to cover it.
 * - drifted:  the newest drift scan of the item found changes and no current
 *             artifact was captured after that scan (a final delta resolves it).
 * - proven:   at least one current artifact passed its latest proof and has a
 *             good copy in some vault.
 * - captured: it has current artifacts, none proven yet.
 * - pending:  nothing captured or tried yet.
 * 'found-not-declared' is never a status here: it is the note "found, not
 * declared", shown beside whatever status the item has.
 */
export interface CaptureFailure {
  itemId: string;
  method: string;
  artifactId: string;
  code: string;
  message: string;
}

export interface ChecklistInput {
  items: Item[];
  artifacts: Artifact[];
  copies: Copy[];
  proofs: Proof[];
  /** Every drift scan in journal order (any stage). */
  driftScans: Drift[];
  captureFailures: CaptureFailure[];
}

const REST_ORDER = ['secret', 'certificate', 'instance-object', 'service', 'task', 'share', 'volume'];

function copyWord(status: Copy['status']): string {
  if (status === 'missing') return 'missing';
  if (status === 'error') return 'unreadable';
  return 'damaged';
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function rank(item: Item): number {
  if (item.kind === 'database') return 0;
  if (item.kind === 'folder') return 1;
  const i = REST_ORDER.indexOf(item.kind);
  return 2 + (i === -1 ? REST_ORDER.length : i);
}

/** Builds one row per item, sorted: databases, folders by path, then the rest by kind and name. Pure. */
export function buildChecklist(input: ChecklistInput): ChecklistRow[] {
  const current = currentArtifacts(input.artifacts);
  const newestScan = new Map<string, Drift>();
  for (const d of input.driftScans) newestScan.set(d.itemId, d);

  const rows = input.items.map((item): ChecklistRow => {
    const notes: string[] = [];
    // A volume item is Rubicon's own everything capture (docs/coverage.md): never "found, not declared".
    if (item.discovered && !item.declared && item.kind !== 'volume') notes.push('found, not declared');
    const missing = isMissing(item);
    if (missing) notes.push('declared, not found');

    const mine = current.filter((a) => a.itemId === item.id);
    let failed = false;
    let covered = false;
    const artifacts = mine.map((a) => {
      const proof = latestProof(input.proofs, a.id);
      const proven = proof ? proofPassed(proof) : null;
      const copies = latestCopies(input.copies, a.id);
      const vaultsOk = copies.filter((c) => c.status === 'ok').map((c) => c.vault);
      const bad = copies.filter((c) => c.status !== 'ok');
      for (const c of bad) notes.push(`copy in vault ${c.vault} ${copyWord(c.status)} (artifact ${a.id}: ${c.status})`);
      if (proven === false) {
        failed = true;
        notes.push(a.origin === 'vendor' ? 'vendor backup cannot be restored' : `${a.method} artifact failed its proof`);
      }
      if (copies.length > 0 && vaultsOk.length === 0) failed = true;
      if (proven === true && vaultsOk.length > 0) covered = true;
      if (a.phase === 'final-capture') notes.push('final delta captured');
      return { id: a.id, method: a.method, proven, vaultsOk, vaultsBad: bad.map((c) => c.vault) };
    });

    for (const f of input.captureFailures.filter((x) => x.itemId === item.id)) {
      failed = true;
      notes.push(`capture failed: ${f.method} (${f.code})`);
    }

    const scan = newestScan.get(item.id);
    let drifted = false;
    if (scan && scan.changes.length > 0) {
      const scanned = parseIsoTime(scan.scannedAt);
      // Resolved only by an artifact provably captured after the scan; unknown times count as drifted.
      drifted = !mine.some((a) => parseIsoTime(a.provenance.startedAt) > scanned);
      if (drifted) notes.push(`changed after capture: ${plural(scan.changes.length, 'file')}`);
    }

    let status: ChecklistStatus;
    if (missing) status = 'missing';
    else if (failed && !covered) status = 'failed';
    else if (drifted) status = 'drifted';
    else if (covered) status = 'proven';
    else if (mine.length > 0) status = 'captured';
    else status = 'pending';

    return {
      itemId: item.id,
      kind: item.kind,
      name: item.name,
      declared: item.declared,
      discovered: item.discovered,
      status,
      notes,
      facts: { ...item.facts },
      why: [...item.why],
      artifacts,
    };
  });

  const byItem = new Map(input.items.map((i) => [i.id, i] as const));
  return rows.sort((x, y) => {
    const a = byItem.get(x.itemId) as Item;
    const b = byItem.get(y.itemId) as Item;
    return rank(a) - rank(b) || cmp(a.name, b.name) || cmp(a.id, b.id);
  });
}
