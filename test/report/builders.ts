/**
 * Builders for report fixtures. They write real journal records (seq, time,
 * hash chain) and derive the RunState with the real `deriveState`, so the
 * reports are tested on exactly what a run would hand them.
 *
 * Stories (SCENARIO.md): `landedStory`, `refusedStory`, `rehearsalStory`.
 */
import { buildChecklist } from '../../src/inventory/checklist.ts';
import { createHash } from 'node:crypto';
import type { JournalEvent, JournalRecord, RunCommand, RunOutcome } from '../../src/core/events.ts';
import { deriveState, type RunState } from '../../src/core/state.ts';
import type {
  Artifact,
  ChecklistRow,
  Copy,
  DriftChange,
  Fingerprint,
  Item,
  Phase,
  Policy,
  Proof,
  ProofCheck,
  RuleResult,
  VaultInfo,
} from '../../src/core/types.ts';

export const RUN_ID = 'r-20250308-0100';
export const VENDOR_ENGINE_MESSAGE = 'database disk image is malformed (SQLITE_CORRUPT)';

const POLICY: Policy = {
  minIndependentMethods: 2,
  minVaults: 2,
  minOffTargetVaults: 1,
  maxProofAgeHours: 24,
  maxConfirmationAgeHours: 72,
  requireRollbackPoint: true,
  requireManualSteps: true,
  requireImmutableCopy: false,
};

export const VAULTS: VaultInfo[] = [
  { name: 'nas', kind: 'filesystem', location: '/srv/vaults/nas', offTarget: true, immutable: false },
  { name: 'offsite', kind: 'azure-blob', location: 'https://rubiconvault.blob.core.windows.net/evidence', offTarget: true, immutable: true },
];

/** Appends journal records with a controllable clock. */
export class JournalBuilder {
  readonly records: JournalRecord[] = [];
  private t: number;

  constructor(start = '2025-03-08T01:00:00.000Z') {
    this.t = Date.parse(start);
  }

  now(): string {
    return new Date(this.t).toISOString();
  }

  advance(ms: number): this {
    this.t += ms;
    return this;
  }

  add(event: JournalEvent, afterMs = 0): this {
    this.t += afterMs;
    const prev = this.records.at(-1)?.hash ?? '0'.repeat(64);
    const seq = this.records.length + 1;
    const at = this.now();
    const hash = createHash('sha256').update(prev + JSON.stringify({ seq, at, event })).digest('hex');
    this.records.push({ seq, at, event, prev, hash });
    return this;
  }

  /** Records phase.started, runs `body` (which advances the clock), then phase.completed with the measured duration. */
  phase(phase: Phase, body: () => void, tailMs = 100): this {
    const start = this.t;
    this.add({ type: 'phase.started', phase });
    body();
    this.advance(tailMs);
    this.add({ type: 'phase.completed', phase, durationMs: this.t - start });
    return this;
  }

  state(): RunState {
    return deriveState(this.records);
  }
}

// ------------------------------------------------------------ facts

function fingerprint(seed: string): Fingerprint {
  const h = (s: string) => createHash('sha256').update(seed + s).digest('hex');
  const tables = [
    { table: 'patients', rows: 2000, hash: h('patients') },
    { table: 'encounters', rows: 8000, hash: h('encounters') },
    { table: 'notes', rows: 6000, hash: h('notes') },
    { table: 'documents', rows: 1500, hash: h('documents') },
  ];
  return { engine: 'sqlite', tables, digest: h('digest') };
}

const GOOD_FP = fingerprint('source-at-capture');

interface ItemSpec {
  id: string;
  kind: 'database' | 'folder';
  name: string;
  declared: boolean;
  bytes: number;
  files: number;
  why: string[];
  methods: string[];
}

export const DB_ID = 'database:sqlite:ehr';

function items(hostileName?: string): ItemSpec[] {
  const list: ItemSpec[] = [
    {
      id: DB_ID,
      kind: 'database',
      name: 'ehr',
      declared: true,
      bytes: 48_234_496,
      files: 1,
      why: ['the EHR database: patients, encounters, notes, document metadata'],
      methods: ['vendor-job', 'sqlite-backup-api', 'sql-text-dump'],
    },
    { id: 'folder:ehr/A', kind: 'folder', name: 'ehr/A', declared: true, bytes: 5_242_880, files: 120, why: ['declared by the vendor'], methods: ['file-mirror'] },
    { id: 'folder:mssql/backup', kind: 'folder', name: 'mssql/backup', declared: true, bytes: 47_185_920, files: 3, why: ['where the vendor backup job writes'], methods: ['file-mirror'] },
    { id: 'folder:ehr/config', kind: 'folder', name: 'ehr/config', declared: true, bytes: 40_960, files: 9, why: ['declared by the engineer'], methods: ['file-mirror'] },
    {
      id: 'folder:ehr/X',
      kind: 'folder',
      name: 'ehr/X',
      declared: false,
      bytes: 734_003_200,
      files: 18_412,
      why: ['scanned documents: 18,412 files, 700 MiB', 'referenced by ehr/A/app.ini line 4 (DocumentRoot)'],
      methods: ['file-mirror'],
    },
    {
      id: 'folder:ehr/Y',
      kind: 'folder',
      name: 'ehr/Y',
      declared: false,
      bytes: 1_048_576,
      files: 37,
      why: ['outbound interface queue: changed 12 minutes before discovery', 'referenced by ehr/A/interfaces.xml'],
      methods: ['file-mirror'],
    },
    {
      id: 'folder:ehr/Z',
      kind: 'folder',
      name: 'ehr/Z',
      declared: false,
      bytes: 2_097_152,
      files: 64,
      why: ['report templates and the licence file (licence.lic)'],
      methods: ['file-mirror'],
    },
  ];
  if (hostileName)
    list.push({ id: `folder:${hostileName}`, kind: 'folder', name: hostileName, declared: false, bytes: 10, files: 1, why: [`named ${hostileName}`], methods: ['file-mirror'] });
  return list;
}

function toItem(s: ItemSpec): Item {
  return {
    id: s.id,
    kind: s.kind,
    name: s.name,
    declared: s.declared,
    discovered: true,
    ...(s.kind === 'database' ? { engine: 'sqlite' } : {}),
    location: s.kind === 'database' ? 'mssql/data/ehr.db' : s.name,
    facts: { bytes: s.bytes, files: s.files, lastChange: '2025-03-07T22:14:03.000Z', ...(s.kind === 'database' ? { tables: 4, rows: 17_500 } : {}) },
    why: s.why,
    methods: s.methods,
  };
}

const artifactId = (phase: 'capture' | 'final-capture', itemId: string, method: string) => `${RUN_ID}.${phase}.${itemId}.${method}`;

function artifact(b: JournalBuilder, spec: ItemSpec, method: string, phase: 'capture' | 'final-capture', durMs: number, extra: Partial<Artifact> = {}): Artifact {
  const startedAt = b.now();
  b.advance(durMs);
  const origin = method === 'vendor-job' ? 'vendor' : 'rubicon';
  return {
    id: artifactId(phase, spec.id, method),
    runId: RUN_ID,
    itemId: spec.id,
    method,
    independenceGroup: method,
    phase,
    origin,
    manifestHash: createHash('sha256').update(`${spec.id}/${method}/${phase}`).digest('hex'),
    fileCount: spec.files,
    bytes: spec.bytes,
    ...(spec.kind === 'database' ? { sourceFingerprint: GOOD_FP } : {}),
    provenance: {
      method,
      tool: origin === 'vendor' ? 'vendor job' : method === 'file-mirror' ? 'rubicon file-mirror 0.1.0' : 'node:sqlite 3.50.4',
      host: 'ehr-srv01',
      startedAt,
      finishedAt: b.now(),
      ...(spec.kind === 'database' ? { position: 'data_version 4711' } : {}),
      ...(origin === 'vendor' ? { command: 'vendor-backup.cmd /target mssql/backup /password=[redacted]' } : {}),
    },
    ...extra,
  };
}

function copies(b: JournalBuilder, a: Artifact): void {
  for (const v of VAULTS) {
    const copy: Copy = { artifactId: a.id, vault: v.name, status: 'ok', checkedAt: b.now() };
    b.add({ type: 'copy.checked', copy }, 150);
  }
}

function proof(b: JournalBuilder, a: Artifact, vault: string, ok: boolean, kind: 'database' | 'folder', scale = 1): Proof {
  const startedAt = b.now();
  const checks: ProofCheck[] =
    kind === 'database'
      ? ok
        ? [
            { name: 'copy-read', status: 'passed', detail: `read ${a.bytes} bytes from ${vault}, SHA-256 matches the manifest`, durationMs: 900 * scale },
            { name: 'restore', status: 'passed', detail: 'restored to the proving ground', durationMs: 7000 * scale },
            { name: 'integrity', status: 'passed', detail: 'PRAGMA integrity_check: ok', durationMs: 1800 * scale },
            { name: 'fingerprint-source', status: 'passed', detail: '4 tables, 17,500 rows: equal to the source at capture', durationMs: 1500 * scale },
            { name: 'fingerprint-peers', status: 'passed', detail: 'equal to the other proven artifacts', durationMs: 10 },
            { name: 'smoke', status: 'passed', detail: 'SELECT count(*) FROM patients: 2000', durationMs: 90 },
          ]
        : [
            { name: 'copy-read', status: 'passed', detail: `read ${a.bytes} bytes from ${vault}, SHA-256 matches the manifest`, durationMs: 850 },
            { name: 'restore', status: 'failed', detail: VENDOR_ENGINE_MESSAGE, durationMs: 420 },
            { name: 'integrity', status: 'skipped', detail: 'not run: the restore failed', durationMs: 0 },
          ]
      : [
          { name: 'copy-read', status: 'passed', detail: `${a.fileCount} objects read from ${vault}`, durationMs: Math.round(a.bytes / 200_000) + 50 },
          { name: 'restore', status: 'passed', detail: `${a.fileCount} files restored`, durationMs: Math.round(a.bytes / 100_000) + 80 },
          { name: 'files-hash', status: 'passed', detail: 'every file matches its manifest SHA-256', durationMs: Math.round(a.bytes / 300_000) + 30 },
        ];
  const durationMs = checks.reduce((n, c) => n + c.durationMs, 0);
  b.advance(durationMs);
  return {
    id: `${a.id}.proof.${vault}`,
    artifactId: a.id,
    itemId: a.itemId,
    vault,
    provingGround: 'pg-sandbox',
    outcome: ok ? 'passed' : 'failed',
    checks,
    ...(kind === 'database' && ok ? { fingerprint: GOOD_FP } : {}),
    startedAt,
    finishedAt: b.now(),
    durationMs,
    bytes: a.bytes,
  };
}

interface StoryOptions {
  command: RunCommand;
  /** Which database methods' proofs pass. */
  dbPasses: (method: string) => boolean;
  drift: boolean;
  gate?: 'pass' | 'refuse';
  cross: boolean;
  outcome: RunOutcome;
  hostileName?: string;
  /** `rubicon rollback`s appended after the run (appendToRun), in order: how each ended (`unfinished`: no end record). */
  rollbacks?: ('completed' | 'failed' | 'unfinished')[];
}

export const ROLLBACK_FAILURE = 'INFRA_FAILED: Pulumi up of stack prod failed: the VM ehr-srv01 did not start from disk ehr-srv01-osdisk-retired';

export const DRIFT_CHANGES: DriftChange[] = [
  { path: 'app.ini', kind: 'modified', size: 2_184, mtimeMs: Date.parse('2025-03-08T01:02:10Z') },
  { path: 'forms/intake.xml', kind: 'modified', size: 18_022, mtimeMs: Date.parse('2025-03-08T01:02:11Z') },
  { path: 'import/batch-0042.hl7', kind: 'added', size: 4_410, mtimeMs: Date.parse('2025-03-08T01:02:12Z') },
];

function story(o: StoryOptions): { state: RunState; checklist: ChecklistRow[]; records: JournalRecord[] } {
  const b = new JournalBuilder();
  const specs = items(o.hostileName);
  b.add({
    type: 'run.started',
    runId: RUN_ID,
    command: o.command,
    target: 'ehr-srv01',
    runbookPath: 'stacks/Pulumi.prod.yaml',
    runbookHash: 'a3f1c0de'.repeat(8),
    policy: POLICY,
    vaults: VAULTS,
    manualSteps: [{ id: 'vendor-notified', description: 'Vendor told the rebuild starts at 01:00', confirmedBy: 'j.doe', confirmedAt: '2025-03-08T00:55:00.000Z' }],
    overrides: [],
    rubiconVersion: '0.1.0',
    host: 'ops-laptop',
  });

  b.phase('discover', () => {
    for (const s of specs) b.add({ type: 'item.discovered', item: toItem(s) }, 550);
  });

  const arts: Artifact[] = [];
  b.phase('capture', () => {
    for (const s of specs)
      for (const method of s.methods) {
        b.add({ type: 'capture.started', itemId: s.id, method, artifactId: artifactId('capture', s.id, method) }, 10);
        const a = artifact(b, s, method, 'capture', s.kind === 'database' ? 6_000 : Math.round(s.bytes / 60_000) + 200);
        b.add({ type: 'artifact.captured', artifact: a });
        copies(b, a);
        arts.push(a);
      }
  });

  b.phase('prove', () => {
    for (const a of arts) {
      const spec = specs.find((s) => s.id === a.itemId)!;
      const ok = spec.kind === 'database' ? o.dbPasses(a.method) : true;
      const vault = a.method === 'sql-text-dump' ? 'offsite' : 'nas';
      b.add({ type: 'proof.recorded', proof: proof(b, a, vault, ok, spec.kind, a.method === 'sql-text-dump' ? 1.3 : 1) });
    }
  });

  if (o.command === 'upgrade') {
    const folderA = specs.find((s) => s.id === 'folder:ehr/A')!;
    b.phase('freeze', () => {
      b.add({ type: 'target.frozen' }, 300);
      for (const a of arts.filter((x) => x.phase === 'capture' && x.method !== 'vendor-job' && x.method !== 'sql-text-dump')) {
        const changes = o.drift && a.itemId === folderA.id ? DRIFT_CHANGES : [];
        b.add({ type: 'drift.scanned', drift: { itemId: a.itemId, artifactId: a.id, stage: 'freeze', changes, scannedAt: b.now() } }, 250);
      }
    });
    b.phase('final-capture', () => {
      if (!o.drift) return;
      const base = artifactId('capture', folderA.id, 'file-mirror');
      b.add({ type: 'capture.started', itemId: folderA.id, method: 'file-mirror', artifactId: artifactId('final-capture', folderA.id, 'file-mirror') }, 20);
      const delta = artifact(b, { ...folderA, files: 3, bytes: 24_616 }, 'file-mirror', 'final-capture', 900, {
        baseArtifactId: base,
        changed: DRIFT_CHANGES,
      });
      b.add({ type: 'artifact.captured', artifact: delta });
      copies(b, delta);
      b.add({ type: 'proof.recorded', proof: proof(b, delta, 'offsite', true, 'folder') });
      for (const s of specs.filter((x) => x.kind === 'folder'))
        b.add({ type: 'drift.scanned', drift: { itemId: s.id, artifactId: base, stage: 'pre-gate', changes: [], scannedAt: b.now() } }, 120);
    });
  }

  if (o.gate) {
    b.phase('gate', () => {
      b.add(
        { type: 'rollback.created', rollbackPoint: { id: 'rb-ehr-srv01-0100', kind: 'sandbox-copy', location: '/srv/rollback/ehr-srv01', createdAt: b.now() } },
        200,
      );
      const dbProofs = b.state().proofs.filter((p) => p.itemId === DB_ID);
      const passedDb = dbProofs.filter((p) => p.outcome === 'passed').map((p) => p.id);
      const results: RuleResult[] = [];
      if (o.gate === 'pass') {
        results.push({ rule: 'database.independent-methods', itemId: DB_ID, status: 'pass', reason: '2 independent methods proven (sqlite-backup-api, sql-text-dump); fingerprints agree with each other and the source', evidence: passedDb });
        results.push({ rule: 'database.fingerprints-agree', itemId: DB_ID, status: 'pass', reason: 'the fingerprints of both proven artifacts equal the source fingerprint at capture', evidence: passedDb });
        results.push({
          rule: 'database.vendor-artifact',
          itemId: DB_ID,
          status: 'warn',
          reason: "the vendor's backup job artifact failed its proof; two independent proven methods remain",
          evidence: dbProofs.filter((p) => p.outcome === 'failed').map((p) => p.id),
        });
      } else {
        results.push({ rule: 'database.independent-methods', itemId: DB_ID, status: 'fail', reason: 'ehr: 0 of 2 required independent methods proven', evidence: dbProofs.map((p) => p.id) });
      }
      for (const s of specs.filter((x) => x.kind === 'folder'))
        results.push({ rule: 'copies.vaults', itemId: s.id, status: 'pass', reason: `${s.name}: verified copies in nas and offsite (2 off the target)`, evidence: [`${artifactId('capture', s.id, 'file-mirror')}@nas`, `${artifactId('capture', s.id, 'file-mirror')}@offsite`] });
      results.push({ rule: 'drift.none', status: 'pass', reason: 'no change since the final capture (pre-gate scan of every folder)', evidence: [] });
      results.push({ rule: 'proofs.fresh', status: 'pass', reason: 'the oldest proof is 2 minutes old (limit 24 h)', evidence: [] });
      results.push({ rule: 'manual-steps.confirmed', status: 'pass', reason: '1 of 1 manual step confirmed (j.doe)', evidence: ['vendor-notified'] });
      results.push({ rule: 'rollback.exists', status: 'pass', reason: 'rollback point rb-ehr-srv01-0100 exists', evidence: ['rb-ehr-srv01-0100'] });
      const passed = o.gate === 'pass';
      b.add(
        {
          type: 'gate.evaluated',
          result: {
            passed,
            evaluatedAt: b.now(),
            results,
            reasons: passed ? [results[1]!.reason] : ['database.independent-methods: ehr: 0 of 2 required independent methods proven.'],
          },
        },
        300,
      );
      if (passed) {
        const proofs = b.state().proofs;
        b.add(
          {
            type: 'permit.issued',
            permit: {
              id: 'permit-7f3a',
              runId: RUN_ID,
              target: 'ehr-srv01',
              image: 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest',
              proofIds: proofs.map((p) => p.id),
              proofSetHash: createHash('sha256').update(proofs.map((p) => p.id).join()).digest('hex'),
              issuedAt: b.now(),
              expiresAt: new Date(Date.parse(b.now()) + 4 * 3600_000).toISOString(),
            },
          },
          50,
        );
      }
    });
  }

  if (o.cross) {
    b.phase('crossing', () => {
      b.add({ type: 'crossing.confirmed', by: 'flag', who: 'j.doe' }, 100);
      b.add({ type: 'crossing.started', permitId: 'permit-7f3a', image: 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest' }, 100);
      b.add({ type: 'crossing.completed', image: 'MicrosoftWindowsServer:WindowsServer:2025-datacenter-azure-edition:latest' }, 95_000);
    });
    b.phase('landing', () => {
      const st = b.state();
      for (const s of specs) {
        const a = st.artifacts.find((x) => x.itemId === s.id && x.method !== 'vendor-job' && x.phase === 'capture')!;
        const restoreMs = s.kind === 'database' ? 7_400 : Math.round(s.bytes / 100_000) + 90;
        b.add({ type: 'landing.restored', itemId: s.id, artifactId: a.id, vault: 'nas', bytes: s.bytes, durationMs: restoreMs }, restoreMs);
        b.add(
          {
            type: 'landing.validated',
            itemId: s.id,
            artifactId: a.id,
            outcome: 'passed',
            checks:
              s.kind === 'database'
                ? [
                    { name: 'integrity', status: 'passed', detail: 'PRAGMA integrity_check: ok' },
                    { name: 'fingerprint-proof', status: 'passed', detail: 'equal to the proof fingerprint' },
                  ]
                : [
                    {
                      name: 'files-hash',
                      status: 'passed',
                      detail: s.id === 'folder:ehr/A' && o.drift ? `${s.files} files match, including the 3 changed after freeze` : `${s.files} files match`,
                    },
                  ],
          },
          400,
        );
      }
      b.add({ type: 'rollback.released', rollbackPointId: 'rb-ehr-srv01-0100' }, 50);
    });
  }

  b.phase('report', () => b.advance(300));
  const exitCode = o.outcome === 'refused' ? 2 : 0;
  b.add({ type: 'run.completed', outcome: o.outcome, exitCode }, 10);
  // A rollback comes after the run, from another command (src/infra/azure/rollback.ts): started, the driver's notes, then its end.
  for (const end of o.rollbacks ?? []) {
    b.add({ type: 'rollback.started', by: 'flag', who: 'a.auditor' }, 3_600_000);
    b.add({ type: 'note', level: 'info', message: 'lock removed from the OS disk of ehr-srv01' }, 60_000);
    if (end === 'completed') b.add({ type: 'rollback.completed', from: 'retired-os-disk', diskId: '/subscriptions/0000/resourceGroups/rg-ehr/providers/Microsoft.Compute/disks/ehr-srv01-osdisk-retired', image: 'disk:ehr-srv01-osdisk-retired' }, 240_000);
    if (end === 'failed') b.add({ type: 'rollback.failed', code: 'INFRA_FAILED', message: ROLLBACK_FAILURE.slice('INFRA_FAILED: '.length) }, 120_000);
  }
  const state = b.state();
  return { state, checklist: checklistFor(state), records: b.records };
}

/** The real checklist of the fixture state (src/inventory/checklist.ts). */
export function checklistFor(state: RunState): ChecklistRow[] {
  return buildChecklist({
    items: state.items,
    artifacts: state.artifacts,
    copies: state.copies,
    proofs: state.proofs,
    driftScans: state.driftScans,
    captureFailures: state.captureFailures,
  });
}

export function landedStory(opts: { hostileName?: string; rollbacks?: StoryOptions['rollbacks'] } = {}) {
  return story({
    command: 'upgrade',
    dbPasses: (m) => m !== 'vendor-job',
    drift: true,
    gate: 'pass',
    cross: true,
    outcome: 'landed',
    ...opts,
  });
}

/** (b) Every database artifact is damaged: the gate refuses, nothing destroyed. */
export function refusedStory() {
  return story({ command: 'upgrade', dbPasses: () => false, drift: false, gate: 'refuse', cross: false, outcome: 'refused' });
}

/** (c) A rehearsal: discover, capture, prove; the target untouched. */
export function rehearsalStory() {
  return story({ command: 'rehearse', dbPasses: (m) => m !== 'vendor-job', drift: false, cross: false, outcome: 'rehearsed' });
}
