import type {
  Artifact,
  CoverageClass,
  CoverageMap,
  Copy,
  Drift,
  DriftChange,
  Fingerprint,
  GateFacts,
  Item,
  Proof,
  ProofCheck,
  ScopeOfDestruction,
} from '../../src/core/types.ts';
import { DEFAULT_POLICY } from '../../src/gate/policy.ts';
import type { RuleId } from '../../src/gate/policy.ts';

/**
 * Builders for the seed scenario (SCENARIO.md) as recorded facts, right
 * before the gate: one SQLite EHR database captured three ways (the vendor's
 * job, whose proof fails, and two of Rubicon's own), five folders (A and
 * mssql/backup declared, X, Y, Z found by discovery), ehr/A re-captured as a
 * final delta after the technician's changes, two off-target vaults, a
 * pre-gate drift scan per item with no changes, a confirmed manual step and
 * a rollback point; the everything capture of the target root (volume:.),
 * re-captured as a final delta too, and the coverage map after the final
 * capture: every folder's files held by their folder artifact and the
 * everything capture, the database's file owned by the database, one stray
 * file held by the everything capture alone. The baseline passes with
 * exactly one warning (vendor).
 */

export const RUN = 'run-1';
export const NOW = '2025-03-14T12:00:00.000Z';

/** ISO time `hours` before NOW. */
export function ago(hours: number): string {
  return new Date(Date.parse(NOW) - hours * 3_600_000).toISOString();
}

export const DB = 'database:sqlite:ehr';
export const FOLDERS = ['ehr/A', 'ehr/X', 'ehr/Y', 'ehr/Z', 'mssql/backup'] as const;
export const folderId = (p: string): string => `folder:${p}`;
export const artifactId = (phase: 'capture' | 'final-capture', itemId: string, method: string): string =>
  `${RUN}.${phase}.${itemId}.${method}`;

export const DB_VENDOR = artifactId('capture', DB, 'vendor-job');
export const DB_BACKUP_API = artifactId('capture', DB, 'sqlite-backup-api');
export const DB_DUMP = artifactId('capture', DB, 'sql-text-dump');
export const A_BASE = artifactId('capture', folderId('ehr/A'), 'file-mirror');
export const A_DELTA = artifactId('final-capture', folderId('ehr/A'), 'file-mirror');
export const folderArtifact = (p: string): string => (p === 'ehr/A' ? A_DELTA : artifactId('capture', folderId(p), 'file-mirror'));
export const VOLUME = 'volume:.';
export const VOLUME_BASE = artifactId('capture', VOLUME, 'file-mirror');
export const VOLUME_DELTA = artifactId('final-capture', VOLUME, 'file-mirror');
export const STRAY = 'notes/todo.txt';

export function scope(): ScopeOfDestruction {
  return {
    infra: 'sandbox',
    os: 'sandbox',
    volumes: [{ path: '.', label: 'the whole target folder', fate: 'destroyed', capture: true }],
    exclusions: [{ path: 'os-release', source: 'built-in', reason: 'the sandbox crossing writes it: it names the new OS' }],
  };
}

/** A class of `files` files under `folder`, for coverage maps. */
export function coverageClass(over: Partial<CoverageClass> & { folder: string }, files = 3, bytes = 4096): CoverageClass {
  const { folder, ...rest } = over;
  return {
    volume: '.',
    holders: [],
    files,
    bytes,
    groups: [{ folder: `${folder}/`, files, bytes, first: Array.from({ length: Math.min(files, 5) }, (_, i) => `${folder}/file-${i}.txt`) }],
    ...rest,
  };
}

export function coverageMap(classes: CoverageClass[], mappedHoursAgo = 0.4): CoverageMap {
  return {
    stage: 'final-capture',
    mappedAt: ago(mappedHoursAgo),
    volumes: ['.'],
    files: classes.reduce((n, c) => n + c.files, 0),
    bytes: classes.reduce((n, c) => n + c.bytes, 0),
    classes,
    skipped: 0,
    hashed: 0,
  };
}

const HEX_A = 'a'.repeat(64);

export function fingerprint(digest = HEX_A): Fingerprint {
  return {
    engine: 'sqlite',
    tables: [
      { table: 'patients', rows: 2000, hash: '1'.repeat(64) },
      { table: 'encounters', rows: 6000, hash: '2'.repeat(64) },
    ],
    digest,
  };
}

export function item(over: Partial<Item> & Pick<Item, 'id' | 'kind' | 'name'>): Item {
  return {
    declared: false,
    discovered: true,
    location: over.name,
    facts: {},
    why: [],
    methods: [],
    ...over,
  };
}

export function artifact(over: Partial<Artifact> & Pick<Artifact, 'id' | 'itemId' | 'method'>, finishedHoursAgo: number): Artifact {
  return {
    runId: RUN,
    independenceGroup: over.method,
    phase: 'capture',
    origin: 'rubicon',
    manifestHash: 'f'.repeat(64),
    fileCount: 3,
    bytes: 4096,
    provenance: {
      method: over.method,
      tool: 'test',
      host: 'target',
      startedAt: ago(finishedHoursAgo + 0.1),
      finishedAt: ago(finishedHoursAgo),
    },
    ...over,
  };
}

export function checks(status: ProofCheck['status'] = 'passed'): ProofCheck[] {
  return [
    { name: 'copy-read', status: 'passed', detail: 'read from vault nas', durationMs: 5 },
    { name: 'restore', status, detail: status === 'passed' ? 'restored' : 'database disk image is malformed', durationMs: 20 },
    { name: 'integrity', status, detail: 'integrity_check', durationMs: 10 },
  ];
}

export function proof(a: Artifact, finishedHoursAgo: number, outcome: Proof['outcome'] = 'passed', fp?: Fingerprint): Proof {
  return {
    id: `proof.${a.id}`,
    artifactId: a.id,
    itemId: a.itemId,
    vault: 'nas',
    provingGround: 'pg-1',
    outcome,
    checks: checks(outcome === 'passed' ? 'passed' : 'failed'),
    ...(fp ? { fingerprint: fp } : {}),
    startedAt: ago(finishedHoursAgo + 0.05),
    finishedAt: ago(finishedHoursAgo),
    durationMs: 180_000,
    bytes: 4096,
  };
}

export function copies(artifactIdValue: string, vaults: string[] = ['nas', 'offsite'], checkedHoursAgo = 3): Copy[] {
  return vaults.map((vault) => ({ artifactId: artifactIdValue, vault, status: 'ok' as const, checkedAt: ago(checkedHoursAgo) }));
}

export function drift(itemId: string, artifactIdValue: string, scannedHoursAgo = 0.2, changes: DriftChange[] = []): Drift {
  return { itemId, artifactId: artifactIdValue, stage: 'pre-gate', changes, scannedAt: ago(scannedHoursAgo) };
}

export const TECHNICIAN_CHANGES: DriftChange[] = [
  { path: 'templates/discharge.rtf', kind: 'modified', size: 900 },
  { path: 'templates/referral.rtf', kind: 'added', size: 700 },
  { path: 'licence.key', kind: 'modified', size: 64 },
];

/** The fully passing facts. A fresh deep object on every call: mutate freely. */
export function baselineFacts(): GateFacts {
  const items: Item[] = [
    item({ id: DB, kind: 'database', name: 'ehr', engine: 'sqlite', location: 'ehr.db', declared: true, methods: ['vendor-job', 'sqlite-backup-api', 'sql-text-dump'] }),
    ...FOLDERS.map((p) =>
      item({
        id: folderId(p),
        kind: 'folder',
        name: p,
        declared: p === 'ehr/A' || p === 'mssql/backup',
        methods: ['file-mirror'],
        facts: { files: 3, bytes: 4096 },
        why: p === 'ehr/A' || p === 'mssql/backup' ? [] : [`referenced by ehr/A/app.ini`],
      }),
    ),
    item({ id: VOLUME, kind: 'volume', name: 'everything under the target root', location: '.', methods: ['file-mirror'], facts: { files: 17, bytes: 20_000 } }),
  ];
  const dbArtifacts = [
    artifact({ id: DB_VENDOR, itemId: DB, method: 'vendor-job', origin: 'vendor', sourceFingerprint: fingerprint() }, 5),
    artifact({ id: DB_BACKUP_API, itemId: DB, method: 'sqlite-backup-api', sourceFingerprint: fingerprint() }, 4.8),
    artifact({ id: DB_DUMP, itemId: DB, method: 'sql-text-dump', sourceFingerprint: fingerprint() }, 4.7),
  ];
  const folderBase = FOLDERS.map((p) => artifact({ id: artifactId('capture', folderId(p), 'file-mirror'), itemId: folderId(p), method: 'file-mirror' }, 4.5));
  const aDelta = artifact(
    {
      id: A_DELTA,
      itemId: folderId('ehr/A'),
      method: 'file-mirror',
      phase: 'final-capture',
      baseArtifactId: A_BASE,
      changed: TECHNICIAN_CHANGES,
    },
    1,
  );
  const volumeBase = artifact({ id: VOLUME_BASE, itemId: VOLUME, method: 'file-mirror', fileCount: 17 }, 4.4);
  const volumeDelta = artifact({ id: VOLUME_DELTA, itemId: VOLUME, method: 'file-mirror', phase: 'final-capture', baseArtifactId: VOLUME_BASE, changed: TECHNICIAN_CHANGES, fileCount: 17 }, 0.9);
  const artifacts = [...dbArtifacts, ...folderBase, volumeBase, aDelta, volumeDelta];
  const [vendor, api, dump] = dbArtifacts as [Artifact, Artifact, Artifact];
  const proofs: Proof[] = [
    proof(vendor, 3.5, 'failed'),
    proof(api, 3.4, 'passed', fingerprint()),
    proof(dump, 3.3, 'passed', fingerprint()),
    ...folderBase.map((a) => proof(a, 3)),
    proof(volumeBase, 2.9),
    proof(aDelta, 0.5),
    proof(volumeDelta, 0.45),
  ];
  return {
    now: NOW,
    policy: { ...DEFAULT_POLICY },
    items,
    artifacts,
    copies: artifacts.flatMap((a) => copies(a.id)),
    proofs,
    drift: [
      drift(DB, DB_BACKUP_API),
      ...FOLDERS.map((p) => drift(folderId(p), folderArtifact(p))),
      drift(VOLUME, VOLUME_DELTA),
    ],
    vaults: [
      { name: 'nas', kind: 'filesystem', location: '/srv/nas/rubicon', offTarget: true, immutable: false },
      { name: 'offsite', kind: 'filesystem', location: '/srv/offsite/rubicon', offTarget: true, immutable: false },
    ],
    manualSteps: [
      { id: 'vendor-backup-job', description: 'Run the vendor SQL backup job', confirmedBy: 'vendor technician (on the phone)', confirmedAt: ago(6) },
    ],
    overrides: [],
    rollbackPoint: { id: 'rollback-1', kind: 'sandbox-copy', location: '/srv/rollback/target', createdAt: ago(0.3) },
    scope: scope(),
    coverage: coverageMap([
      ...FOLDERS.map((p) => coverageClass({ folder: p, holders: [folderArtifact(p), VOLUME_DELTA].sort() })),
      coverageClass({ folder: '.', owner: DB }, 1, 2 << 20),
      coverageClass({ folder: 'notes', holders: [VOLUME_DELTA] }, 1, 700),
    ]),
  };
}

// ---------------------------------------------------------------- mutations

export interface Mutation {
  name: string;
  /** The one rule this mutation alone makes fail. */
  rule: RuleId;
  /** Mutates in place. Must stay harmless when what it targets was already removed by another mutation. */
  apply(f: GateFacts): void;
}

function proofOf(f: GateFacts, id: string): Proof | undefined {
  return f.proofs.find((p) => p.artifactId === id);
}

function failProof(p: Proof | undefined): void {
  if (!p) return;
  p.outcome = 'failed';
  p.checks = checks('failed');
}

function dropItemArtifacts(f: GateFacts, itemId: string): void {
  const ids = new Set(f.artifacts.filter((a) => a.itemId === itemId).map((a) => a.id));
  f.artifacts = f.artifacts.filter((a) => !ids.has(a.id));
  f.copies = f.copies.filter((c) => !ids.has(c.artifactId));
  f.proofs = f.proofs.filter((p) => !ids.has(p.artifactId));
  f.drift = f.drift.filter((d) => d.itemId !== itemId);
}

export const MUTATIONS: Mutation[] = [
  {
    name: 'a database proof failed',
    rule: 'database.independent-methods',
    apply: (f) => failProof(proofOf(f, DB_BACKUP_API)),
  },
  {
    name: 'a folder proof failed',
    rule: 'folder.proven',
    apply: (f) => failProof(proofOf(f, folderArtifact('ehr/Y'))),
  },
  {
    name: 'a proof says passed but one check was skipped',
    rule: 'folder.proven',
    apply: (f) => {
      const p = proofOf(f, folderArtifact('ehr/Z'));
      const c = p?.checks[2];
      if (c) c.status = 'skipped';
    },
  },
  {
    name: 'fingerprint mismatch',
    rule: 'database.fingerprints-agree',
    apply: (f) => {
      const p = proofOf(f, DB_DUMP);
      if (p) p.fingerprint = fingerprint('b'.repeat(64));
    },
  },
  {
    name: 'one copy damaged, leaving 1 vault',
    rule: 'copies.vaults',
    apply: (f) => {
      const c = f.copies.find((x) => x.artifactId === folderArtifact('ehr/X') && x.vault === 'nas');
      if (c) {
        c.status = 'checksum-mismatch';
        c.detail = 'object 3f2a… hashes differently';
      }
    },
  },
  {
    name: "the delta's base copy damaged in one vault",
    rule: 'copies.vaults',
    apply: (f) => {
      const c = f.copies.find((x) => x.artifactId === A_BASE && x.vault === 'offsite');
      if (c) c.status = 'size-invalid';
    },
  },
  {
    name: 'only on-target vaults',
    rule: 'copies.vaults',
    apply: (f) => {
      for (const v of f.vaults) v.offTarget = false;
    },
  },
  {
    name: 'a stale proof',
    rule: 'proofs.fresh',
    apply: (f) => {
      const p = proofOf(f, folderArtifact('ehr/Z'));
      if (p) {
        p.startedAt = ago(30.1);
        p.finishedAt = ago(30);
      }
    },
  },
  {
    name: 'a proof time without a zone',
    rule: 'proofs.fresh',
    apply: (f) => {
      const p = proofOf(f, folderArtifact('mssql/backup'));
      if (p) p.finishedAt = p.finishedAt.replace('Z', '');
    },
  },
  {
    name: 'drift present',
    rule: 'drift.none',
    apply: (f) => {
      const d = f.drift.find((x) => x.itemId === folderId('ehr/A'));
      if (d) d.changes = [...TECHNICIAN_CHANGES];
    },
  },
  {
    name: 'drift scan missing',
    rule: 'drift.none',
    apply: (f) => {
      f.drift = f.drift.filter((x) => x.itemId !== folderId('ehr/X'));
    },
  },
  {
    name: 'drift scan older than the capture',
    rule: 'drift.none',
    apply: (f) => {
      const d = f.drift.find((x) => x.itemId === folderId('ehr/A'));
      if (d) d.scannedAt = ago(2);
    },
  },
  {
    name: 'drift scan compared against a superseded artifact',
    rule: 'drift.none',
    apply: (f) => {
      const d = f.drift.find((x) => x.itemId === folderId('ehr/A'));
      if (d) d.artifactId = A_BASE;
    },
  },
  {
    name: 'a manual step not confirmed',
    rule: 'manual-steps.confirmed',
    apply: (f) => {
      for (const s of f.manualSteps) {
        delete s.confirmedBy;
        delete s.confirmedAt;
      }
    },
  },
  {
    name: 'no rollback point',
    rule: 'rollback.exists',
    apply: (f) => {
      delete f.rollbackPoint;
    },
  },
  {
    name: 'a declared item missing',
    rule: 'item.declared-found',
    apply: (f) => {
      f.items.push(item({ id: folderId('ehr/B'), kind: 'folder', name: 'ehr/B', declared: true, discovered: false, facts: { missing: true } }));
    },
  },
  {
    name: 'a folder not captured',
    rule: 'item.captured',
    apply: (f) => dropItemArtifacts(f, folderId('ehr/Z')),
  },
  {
    name: 'every database artifact damaged (all proofs failed)',
    rule: 'database.independent-methods',
    apply: (f) => {
      for (const p of f.proofs.filter((x) => x.itemId === DB)) failProof(p);
    },
  },
  {
    name: 'empty inventory',
    rule: 'inventory.empty',
    apply: (f) => {
      f.items = [];
      f.artifacts = [];
      f.copies = [];
      f.proofs = [];
      f.drift = [];
      // An empty target: its coverage map finds no file either.
      f.coverage = coverageMap([]);
    },
  },
  {
    name: 'a stray file neither held by an artifact nor excluded',
    rule: 'coverage.complete',
    apply: (f) => {
      f.coverage?.classes.push(coverageClass({ folder: 'practice-docs', holders: [] }, 1, 14_000));
    },
  },
  {
    name: 'an exclusion without a reason',
    rule: 'coverage.complete',
    apply: (f) => {
      f.coverage?.classes.push(coverageClass({ folder: 'cache', exclusion: { path: 'cache', source: 'runbook', reason: ' ', by: 'ops' } }, 40, 1 << 20));
    },
  },
  {
    name: 'the coverage map missing',
    rule: 'coverage.complete',
    apply: (f) => {
      delete f.coverage;
    },
  },
  {
    name: 'the coverage map older than a capture',
    rule: 'coverage.complete',
    apply: (f) => {
      if (f.coverage) f.coverage.mappedAt = ago(2);
    },
  },
  {
    name: 'the scope of destruction unknown',
    rule: 'coverage.complete',
    apply: (f) => {
      delete f.scope;
    },
  },
  {
    name: 'the everything capture off (and nothing outside the folders)',
    rule: 'coverage.everything',
    apply: (f) => {
      dropItemArtifacts(f, VOLUME);
      f.items = f.items.filter((i) => i.id !== VOLUME);
      if (f.coverage) {
        f.coverage.classes = f.coverage.classes
          .filter((c) => !(c.holders.length === 1 && c.holders[0] === VOLUME_DELTA))
          .map((c) => ({ ...c, holders: c.holders.filter((h) => h !== VOLUME_DELTA) }));
      }
    },
  },
  {
    name: 'a secret unproven',
    rule: 'secrets.captured',
    apply: (f) => {
      const id = 'certificate:tde-cert';
      const a = artifact({ id: artifactId('capture', id, 'cert-export'), itemId: id, method: 'cert-export' }, 4);
      f.items.push(item({ id, kind: 'certificate', name: 'TDE certificate' }));
      f.artifacts.push(a);
      f.copies.push(...copies(a.id));
      f.proofs.push(proof(a, 3, 'failed'));
      f.drift.push(drift(id, a.id));
    },
  },
  {
    name: 'an instance-level object (a login) captured but its proof failed',
    rule: 'item.proven',
    apply: (f) => {
      const id = 'instance-object:mssql:login:ehr_app';
      const a = artifact({ id: artifactId('capture', id, 'instance-objects'), itemId: id, method: 'instance-objects' }, 4);
      f.items.push(item({ id, kind: 'instance-object', name: 'ehr_app', engine: 'mssql' }));
      f.artifacts.push(a);
      f.copies.push(...copies(a.id));
      f.proofs.push(proof(a, 3, 'failed'));
      f.drift.push(drift(id, a.id));
    },
  },
  {
    name: 'immutability required but absent',
    rule: 'copies.immutable',
    apply: (f) => {
      f.policy.requireImmutableCopy = true;
    },
  },
  {
    name: 'the policy loosened (minVaults 1)',
    rule: 'policy.not-looser',
    apply: (f) => {
      f.policy.minVaults = 1;
    },
  },
];

/** Deep-freezes a value so any mutation by the code under test throws. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
