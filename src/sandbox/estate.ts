import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RubiconError } from '../core/errors.ts';
import type { RunHooks } from '../run/context.ts';
import { createSyntheticEhr } from './synthetic-ehr.ts';

/**
 * The sandbox estate of SCENARIO.md on local disk: the target (a folder
 * standing in for the Windows Server), an empty proving ground, two vaults
 * off the target, and the runbook as the vendor wrote it. Deterministic
 * content, synthetic data only (no real PHI).
 *
 * Contract: refuses a DIR that exists and is not empty, so it never
 * overwrites anything.
 */
export interface SandboxLayout {
  dir: string;
  runbook: string;
  target: string;
  provingGround: string;
  vaults: string[];
  stateDir: string;
}

const VENDOR_JOB = fileURLToPath(new URL('./vendor-backup-job.ts', import.meta.url));
const DAY = 86_400_000;

export function sandboxLayout(dir: string): SandboxLayout {
  const d = path.resolve(dir);
  return {
    dir: d,
    runbook: path.join(d, 'runbook.yaml'),
    target: path.join(d, 'target'),
    provingGround: path.join(d, 'proving-ground'),
    vaults: [path.join(d, 'vaults', 'nas'), path.join(d, 'vaults', 'offsite')],
    stateDir: path.join(d, 'state'),
  };
}

async function put(file: string, content: string | Buffer, ageDays: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
  const t = new Date(Date.now() - ageDays * DAY);
  await utimes(file, t, t);
}

/** A tiny deterministic PRNG so every sandbox is the same. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface SandboxOptions {
  /** Patients in the EHR database. Default 2,000 (≈ 25,000 rows). */
  patients?: number;
  /** Scanned documents in ehr/X. Default 240 (≈ 4 MiB). */
  documents?: number;
  /** Outbound HL7 messages in ehr/Y. Default 60. */
  messages?: number;
  vendorMode?: 'truncate' | 'damage-page' | 'good';
}

/**
 * Builds the estate. The same folders, files and story at every size; the
 * options only say how many patients, documents and messages (the crash
 * tests play the story many times on a small estate).
 */
export async function buildSandbox(dir: string, options: SandboxOptions = {}): Promise<SandboxLayout> {
  const L = sandboxLayout(dir);
  if (existsSync(L.dir) && (await readdir(L.dir)).length > 0) {
    throw new RubiconError('ARGUMENTS_INVALID', `${L.dir} exists and is not empty`, {
      hint: 'pass a new or empty folder: rubicon sandbox DIR never overwrites anything',
    });
  }
  const T = (p: string) => path.join(L.target, p);
  const rand = rng(20261128);

  // ehr/A — the vendor's application folder (declared).
  await put(
    T('ehr/A/app.ini'),
    [
      '; EHR application server configuration',
      '[paths]',
      'Database=D:\\mssql\\data\\ehr.db',
      'ScannedDocuments=D:\\ehr\\X\\scans',
      'InterfaceOutbound=D:\\ehr\\Y\\outbound',
      'ReportTemplates=D:\\ehr\\Z\\templates',
      'Licence=D:\\ehr\\Z\\licence.lic',
      '[backup]',
      'Folder=D:\\mssql\\backup',
      '',
    ].join('\r\n'),
    30,
  );
  await put(T('ehr/A/bin/EhrServer.exe'), Buffer.alloc(256 * 1024, 0x4d), 400);
  await mkdir(T('ehr/A/bin'), { recursive: true });
  await copyFile(VENDOR_JOB, T('ehr/A/bin/sqlbackup.ts'));
  for (let i = 0; i < 12; i++) await put(T(`ehr/A/forms/form-${String(i).padStart(2, '0')}.xml`), `<form id="${i}"><field name="vitals"/></form>\n`, 200);

  // ehr/X — scanned documents the vendor never mentioned.
  for (let i = 0; i < (options.documents ?? 240); i++) {
    const size = 2048 + Math.floor(rand() * 30_000);
    const body = Buffer.alloc(size);
    for (let j = 0; j < size; j++) body[j] = Math.floor(rand() * 256);
    await put(T(`ehr/X/scans/${2023 + (i % 3)}/doc-${String(i).padStart(6, '0')}.pdf`), Buffer.concat([Buffer.from('%PDF-1.4 synthetic\n'), body]), 1 + (i % 90));
  }
  // ehr/Y — the outbound interface queue (synthetic HL7, no real people).
  for (let i = 0; i < (options.messages ?? 60); i++) {
    await put(T(`ehr/Y/outbound/msg-${String(i).padStart(5, '0')}.hl7`), `MSH|^~\\&|EHR|CLINIC|LAB|LABCO|2026112${i % 10}||ORM^O01|${i}|P|2.3\rPID|1||SYN${String(i).padStart(6, '0')}||Synthetic^Patient${i}\r`, i % 3);
  }
  // ehr/Z — report templates and the licence file.
  for (let i = 0; i < 18; i++) await put(T(`ehr/Z/templates/report-${i}.rpt`), `REPORT TEMPLATE ${i}\n`.repeat(50), 120);
  await put(T('ehr/Z/licence.lic'), 'LICENSED-TO=Sandbox Family Practice\nKEY=SANDBOX-0000-0000-0000\n', 365);

  // mssql — the database and the vendor's backup folder (declared).
  await mkdir(T('mssql/backup'), { recursive: true });
  await mkdir(T('mssql/data'), { recursive: true });
  createSyntheticEhr(T('mssql/data/ehr.db'), { patients: options.patients ?? 2000 });

  await mkdir(L.provingGround, { recursive: true });
  for (const v of L.vaults) await mkdir(v, { recursive: true });
  await writeFile(L.runbook, sandboxRunbook(options.vendorMode ?? 'truncate', new Date()));
  return L;
}

/** The runbook's JSON Schema in this installation (docs/runbook.md): editors read it through the first line. */
export const RUNBOOK_SCHEMA_FILE = fileURLToPath(new URL('../../docs/schema/runbook.schema.json', import.meta.url));

export function sandboxRunbook(vendorMode: string, confirmedAt: Date, schema: string = RUNBOOK_SCHEMA_FILE): string {
  return `# yaml-language-server: $schema=${schema}
# Rubicon runbook for the sandbox estate (written by \`rubicon sandbox\`).
# Paths are relative to this file. Edit anything, then:
#   rubicon plan --runbook runbook.yaml
#   rubicon upgrade --runbook runbook.yaml --yes
version: 1
name: ehr-upgrade
target:
  name: ehr-server
  root: ./target
  image: Windows Server 2025 Datacenter
  # stage: staging   # then \`rubicon rehearse\` rehearses the whole upgrade, crossing included
infra:
  kind: sandbox
  provingGround: ./proving-ground
  rollback: ./rollback
  currentImage: Windows Server 2016 Standard

# What the vendor asked for, word for word:
#   "Be sure to backup A folder and the MSSQL/backup folder.
#    Also be sure to run our SQL backup job before backing up the folder."
declared:
  folders:
    - ehr/A
    - mssql/backup
vendorJobs:
  - name: vendor SQL backup job
    database: ehr
    command: [node, ehr/A/bin/sqlbackup.ts, mssql/data/ehr.db, mssql/backup, --mode, ${vendorMode}]
    output: mssql/backup
    timeoutSeconds: 600

# Rubicon looks further than the vendor did.
discovery:
  roots: [ehr, mssql]
  depth: 1

vaults:
  - name: nas
    kind: filesystem
    path: ./vaults/nas
    offTarget: true
  - name: offsite
    kind: filesystem
    path: ./vaults/offsite
    offTarget: true

# The default policy applies; a runbook may only make it stricter.
policy: {}

manualSteps:
  - id: vendor-window
    description: The vendor confirmed the maintenance window and stopped the application
    confirmedBy: vendor technician (sandbox)
    confirmedAt: ${confirmedAt.toISOString()}
`;
}

/**
 * The demo's "vendor technician": the morning after the backup, moves and
 * changes files in ehr/A. Returns the paths touched, relative to the target.
 */
export async function technicianChanges(targetRoot: string): Promise<string[]> {
  const ini = path.join(targetRoot, 'ehr/A/app.ini');
  const text = await readFile(ini, 'utf8');
  await writeFile(ini, text + 'LabInterfaceMap=D:\\ehr\\A\\interfaces\\lab-map.xml\r\n');
  await mkdir(path.join(targetRoot, 'ehr/A/interfaces'), { recursive: true });
  await writeFile(path.join(targetRoot, 'ehr/A/interfaces/lab-map.xml'), '<map><code from="GLU" to="2345-7"/></map>\n');
  await writeFile(path.join(targetRoot, 'ehr/A/forms/form-12.xml'), '<form id="12"><field name="consent"/></form>\n');
  return ['ehr/A/app.ini', 'ehr/A/interfaces/lab-map.xml', 'ehr/A/forms/form-12.xml'];
}

/**
 * The demo's run hooks: after the proofs, the vendor technician changes
 * files (once per run; a resumed run that already recorded it does not
 * change them again), and the run records a note saying so.
 */
export function technicianHooks(targetRoot: string): RunHooks {
  return {
    afterPhase: async (phase, ctx) => {
      if (phase !== 'prove') return;
      if (ctx.state().notes.some((n) => n.message.startsWith('demo: the vendor technician'))) return;
      const touched = await technicianChanges(targetRoot);
      ctx.record({ type: 'note', level: 'warn', message: `demo: the vendor technician changed files after the backup: ${touched.join(', ')}` });
    },
  };
}
