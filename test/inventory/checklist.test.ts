import { describe, expect, it } from 'vitest';
import type { ChecklistRow, GateFacts } from '../../src/core/types.ts';
import { buildChecklist, type ChecklistInput } from '../../src/inventory/checklist.ts';
import {
  A_BASE,
  A_DELTA,
  DB,
  DB_BACKUP_API,
  DB_DUMP,
  DB_VENDOR,
  TECHNICIAN_CHANGES,
  ago,
  artifact,
  artifactId,
  baselineFacts,
  copies,
  deepFreeze,
  folderArtifact,
  folderId,
  item,
  proof,
} from '../gate/builders.ts';

/** The checklist input at the gate: the freeze scan that found the technician's changes, then the pre-gate scans. */
function atGate(f: GateFacts = baselineFacts()): ChecklistInput {
  return {
    items: f.items,
    artifacts: f.artifacts,
    copies: f.copies,
    proofs: f.proofs,
    driftScans: [
      { itemId: folderId('ehr/A'), artifactId: A_BASE, stage: 'freeze', changes: TECHNICIAN_CHANGES, scannedAt: ago(1.5) },
      ...f.drift,
    ],
    captureFailures: [],
  };
}

function row(rows: ChecklistRow[], itemId: string): ChecklistRow {
  const r = rows.find((x) => x.itemId === itemId);
  if (!r) throw new Error(`no row ${itemId}`);
  return r;
}

describe('buildChecklist: the scenario at the gate', () => {
  const rows = buildChecklist(deepFreeze(atGate()));

  it('lists every item once, databases first, then folders by path', () => {
    expect(rows.map((r) => r.itemId)).toEqual([
      DB,
      folderId('ehr/A'),
      folderId('ehr/X'),
      folderId('ehr/Y'),
      folderId('ehr/Z'),
      folderId('mssql/backup'),
      'volume:.',
    ]);
  });

  it('the everything capture is last, proven, and never "found, not declared"', () => {
    const v = row(rows, 'volume:.');
    expect(v.status).toBe('proven');
    expect(v.notes.join(' ')).not.toMatch(/found, not declared/);
  });

  it('the database is proven, and the vendor backup is named as unrestorable', () => {
    const db = row(rows, DB);
    expect(db.status).toBe('proven');
    expect(db.notes).toEqual(['vendor backup cannot be restored']);
    expect(db.artifacts).toEqual([
      { id: DB_VENDOR, method: 'vendor-job', proven: false, vaultsOk: ['nas', 'offsite'], vaultsBad: [] },
      { id: DB_BACKUP_API, method: 'sqlite-backup-api', proven: true, vaultsOk: ['nas', 'offsite'], vaultsBad: [] },
      { id: DB_DUMP, method: 'sql-text-dump', proven: true, vaultsOk: ['nas', 'offsite'], vaultsBad: [] },
    ]);
  });

  it('X, Y and Z are "found, not declared" and proven; A and mssql/backup are declared', () => {
    for (const p of ['ehr/X', 'ehr/Y', 'ehr/Z']) {
      const r = row(rows, folderId(p));
      expect(r.status).toBe('proven');
      expect(r.notes).toEqual(['found, not declared']);
      expect(r.declared).toBe(false);
      expect(r.why).toEqual(['referenced by ehr/A/app.ini']);
      expect(r.facts).toEqual({ files: 3, bytes: 4096 });
    }
    expect(row(rows, folderId('mssql/backup'))).toMatchObject({ status: 'proven', notes: [], declared: true });
  });

  it('ehr/A shows the final delta as its one current artifact, proven', () => {
    const a = row(rows, folderId('ehr/A'));
    expect(a.status).toBe('proven');
    expect(a.notes).toEqual(['final delta captured']);
    expect(a.artifacts.map((x) => x.id)).toEqual([A_DELTA]);
  });
});

describe('buildChecklist: statuses', () => {
  it('drifted after the freeze scan, before the final delta: "changed after capture: 3 files"', () => {
    const f = baselineFacts();
    f.artifacts = f.artifacts.filter((a) => a.id !== A_DELTA);
    const input = { ...atGate(f), driftScans: atGate(f).driftScans.filter((d) => d.stage === 'freeze') };
    const a = row(buildChecklist(input), folderId('ehr/A'));
    expect(a.status).toBe('drifted');
    expect(a.notes).toEqual(['changed after capture: 3 files']);
    expect(a.artifacts.map((x) => x.id)).toEqual([A_BASE]);
  });

  it('a change after the final capture makes it drifted again', () => {
    const input = atGate();
    input.driftScans = [
      ...input.driftScans,
      { itemId: folderId('ehr/A'), artifactId: A_DELTA, stage: 'pre-gate', changes: [{ path: 'late.txt', kind: 'added' }], scannedAt: ago(0.1) },
    ];
    const a = row(buildChecklist(input), folderId('ehr/A'));
    expect(a.status).toBe('drifted');
    expect(a.notes).toEqual(['final delta captured', 'changed after capture: 1 file']);
  });

  it('a damaged copy is named by vault and artifact and listed as bad', () => {
    const f = baselineFacts();
    const x = folderArtifact('ehr/X');
    f.copies = f.copies.map((c) => (c.artifactId === x && c.vault === 'nas' ? { ...c, status: 'checksum-mismatch' as const } : c));
    const r = row(buildChecklist(atGate(f)), folderId('ehr/X'));
    expect(r.status).toBe('proven'); // one good copy remains; the gate decides whether that is enough
    expect(r.notes).toEqual(['found, not declared', `copy in vault nas damaged (artifact ${x}: checksum-mismatch)`]);
    expect(r.artifacts[0]).toMatchObject({ vaultsOk: ['offsite'], vaultsBad: ['nas'] });
  });

  it('every copy bad → failed; a missing copy says missing', () => {
    const f = baselineFacts();
    const y = folderArtifact('ehr/Y');
    f.copies = f.copies.map((c) => (c.artifactId === y ? { ...c, status: c.vault === 'nas' ? ('missing' as const) : ('error' as const) } : c));
    const r = row(buildChecklist(atGate(f)), folderId('ehr/Y'));
    expect(r.status).toBe('failed');
    expect(r.notes).toContain(`copy in vault nas missing (artifact ${y}: missing)`);
    expect(r.notes).toContain(`copy in vault offsite unreadable (artifact ${y}: error)`);
  });

  it('every database proof failed → failed', () => {
    const f = baselineFacts();
    f.proofs = f.proofs.map((p) => (p.itemId === DB ? { ...p, outcome: 'failed' as const } : p));
    const db = row(buildChecklist(atGate(f)), DB);
    expect(db.status).toBe('failed');
    expect(db.notes).toEqual([
      'vendor backup cannot be restored',
      'sqlite-backup-api artifact failed its proof',
      'sql-text-dump artifact failed its proof',
    ]);
  });

  it('declared, not found → missing, above everything else', () => {
    const f = baselineFacts();
    f.items.push(item({ id: folderId('ehr/B'), kind: 'folder', name: 'ehr/B', declared: true, discovered: false, facts: { missing: true } }));
    const r = row(buildChecklist(atGate(f)), folderId('ehr/B'));
    expect(r).toMatchObject({ status: 'missing', notes: ['declared, not found'], artifacts: [] });
  });

  it('captured but not yet proven → captured (proven: null); nothing yet → pending', () => {
    const f = baselineFacts();
    f.proofs = f.proofs.filter((p) => p.itemId !== folderId('ehr/Z'));
    f.items.push(item({ id: 'service:EhrInterface', kind: 'service', name: 'EhrInterface' }));
    const rows = buildChecklist(atGate(f));
    const z = row(rows, folderId('ehr/Z'));
    expect(z.status).toBe('captured');
    expect(z.artifacts[0]?.proven).toBeNull();
    expect(row(rows, 'service:EhrInterface')).toMatchObject({ status: 'pending', notes: ['found, not declared'] });
  });

  it('a capture failure with nothing else → failed; covered by another proven method → still proven', () => {
    const f = baselineFacts();
    f.items.push(item({ id: 'folder:ehr/Q', kind: 'folder', name: 'ehr/Q' }));
    const input = atGate(f);
    input.captureFailures = [
      { itemId: 'folder:ehr/Q', method: 'file-mirror', artifactId: 'run-1.capture.folder:ehr/Q.file-mirror', code: 'CAPTURE_FAILED', message: 'permission denied' },
      { itemId: DB, method: 'pg-dump', artifactId: 'x', code: 'COMMAND_FAILED', message: 'no such tool' },
    ];
    const rows = buildChecklist(input);
    expect(row(rows, 'folder:ehr/Q')).toMatchObject({ status: 'failed', notes: ['found, not declared', 'capture failed: file-mirror (CAPTURE_FAILED)'] });
    expect(row(rows, DB).status).toBe('proven');
    expect(row(rows, DB).notes).toContain('capture failed: pg-dump (COMMAND_FAILED)');
  });

  it('a proof whose outcome says passed but whose check was skipped is not proven', () => {
    const f = baselineFacts();
    f.proofs = f.proofs.map((p) =>
      p.artifactId === folderArtifact('ehr/Y') ? { ...p, checks: p.checks.map((c, i) => (i === 2 ? { ...c, status: 'skipped' as const } : c)) } : p,
    );
    const r = row(buildChecklist(atGate(f)), folderId('ehr/Y'));
    expect(r.status).toBe('failed');
    expect(r.artifacts[0]?.proven).toBe(false);
  });

  it('sorts the rest after folders, by kind then name', () => {
    const f = baselineFacts();
    const cert = 'certificate:tde';
    const a = artifact({ id: artifactId('capture', cert, 'cert-export'), itemId: cert, method: 'cert-export' }, 4);
    f.items.unshift(
      item({ id: 'task:nightly', kind: 'task', name: 'nightly' }),
      item({ id: cert, kind: 'certificate', name: 'tde' }),
      item({ id: 'secret:vault-key', kind: 'secret', name: 'vault-key' }),
      item({ id: 'folder:aaa', kind: 'folder', name: 'aaa' }),
      item({ id: 'database:sqlite:audit', kind: 'database', name: 'audit' }),
    );
    f.artifacts.push(a);
    f.copies.push(...copies(a.id));
    f.proofs.push(proof(a, 2));
    const rows = buildChecklist(atGate(f));
    expect(rows.map((r) => r.itemId)).toEqual([
      'database:sqlite:audit',
      DB,
      'folder:aaa',
      folderId('ehr/A'),
      folderId('ehr/X'),
      folderId('ehr/Y'),
      folderId('ehr/Z'),
      folderId('mssql/backup'),
      'secret:vault-key',
      cert,
      'task:nightly',
      'volume:.',
    ]);
    expect(row(rows, cert).status).toBe('proven');
  });

  it('an empty inventory is an empty checklist', () => {
    expect(buildChecklist({ items: [], artifacts: [], copies: [], proofs: [], driftScans: [], captureFailures: [] })).toEqual([]);
  });
});
