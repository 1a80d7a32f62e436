/**
 * A deterministic synthetic EHR database for the sandbox (SQLite through
 * node:sqlite). NO real PHI: names are built from small syllable lists,
 * MRNs, phone numbers and addresses are fake, dates are generated from a
 * fixed base. The same options always give the same content (and so the
 * same fingerprint).
 *
 * Tables: users, patients, encounters, notes (multi-line text with quotes
 * and non-ASCII), documents (metadata pointing to files such as
 * 'X/scans/2024/doc-000123.pdf', plus a small BLOB thumbnail) and
 * interface_queue (HL7-like outbound messages).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

export interface SyntheticEhrOptions {
  /** Number of patients. Default 2,000 (≈ 25,000 rows in all). */
  patients?: number;
  /** PRNG seed. Default 1. */
  seed?: number;
  /** Put the database in WAL journal mode. Default false (rollback journal). */
  wal?: boolean;
}

const FIRST = ['ka', 'lo', 'mi', 'ra', 'te', 'su', 'no', 'vi', 'el', 'an', 'jo', 'be'];
const LAST = ['dor', 'wen', 'mar', 'sol', 'tin', 'rak', 'vel', 'bra', 'lim', 'zor', 'qui', 'fen'];
const STREETS = ['Elm', 'Birch', 'Harbor', 'Mill', 'Quarry', 'Orchard', 'Lantern'];
const REASONS = ['follow-up', 'annual exam', 'cough, 3 days', 'lab review', "patient's request", 'medication refill', 'wound check'];
const KINDS = ['office', 'telehealth', 'inpatient', 'emergency'];
const ROLES = ['physician', 'nurse', 'front-desk', 'billing', 'admin'];
const MIMES = ['application/pdf', 'image/tiff', 'image/png'];
const NOTE_LINES = [
  'Patient reports feeling "much better" since last visit.',
  "Denies fever; reports mild fatigue. Pt's spouse present.",
  'Vitals stable. BP 128/82, HR 72.',
  'Plan: continue current regimen; recheck in 4–6 weeks.',
  'Discussed diet — reduce salt, increase fluids.',
  'Allergies reviewed: none known (NKDA).',
  'Température normale. Douleur 2/10.',
];

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SCHEMA = `
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  display_name TEXT NOT NULL,
  role TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE patients (
  id INTEGER PRIMARY KEY,
  mrn TEXT NOT NULL UNIQUE,
  family_name TEXT NOT NULL,
  given_name TEXT NOT NULL,
  birth_date TEXT NOT NULL,
  sex TEXT NOT NULL CHECK (sex IN ('F', 'M', 'U')),
  phone TEXT,
  address TEXT,
  weight_kg REAL,
  created_at TEXT NOT NULL
);
CREATE TABLE encounters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  patient_id INTEGER NOT NULL REFERENCES patients(id),
  provider_id INTEGER NOT NULL REFERENCES users(id),
  started_at TEXT NOT NULL,
  kind TEXT NOT NULL,
  reason TEXT,
  status TEXT NOT NULL
);
CREATE INDEX encounters_patient ON encounters(patient_id, started_at);
CREATE TABLE notes (
  id INTEGER PRIMARY KEY,
  encounter_id INTEGER NOT NULL REFERENCES encounters(id),
  author_id INTEGER NOT NULL REFERENCES users(id),
  created_at TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE TABLE documents (
  id INTEGER PRIMARY KEY,
  patient_id INTEGER NOT NULL REFERENCES patients(id),
  path TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  scanned_at TEXT NOT NULL,
  thumbnail BLOB
);
CREATE INDEX documents_patient ON documents(patient_id);
CREATE TABLE interface_queue (
  id INTEGER PRIMARY KEY,
  message_type TEXT NOT NULL,
  patient_id INTEGER REFERENCES patients(id),
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  sent_at TEXT
);
CREATE VIEW open_encounters AS SELECT id, patient_id, started_at FROM encounters WHERE status = 'open';
`;

const BASE = Date.UTC(2019, 0, 1);
const DAY = 86_400_000;
const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');

/**
 * Creates the synthetic EHR at `path` (parent folders created). Destructive
 * at `path`: an existing file there (and its -wal/-shm/-journal) is
 * replaced. Deterministic for equal options. Returns table and row counts.
 */
export function createSyntheticEhr(path: string, options: SyntheticEhrOptions = {}): { tables: number; rows: number } {
  const patients = options.patients ?? 2_000;
  const rnd = prng(options.seed ?? 1);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const name = (syllables: readonly string[], n: number): string => {
    let s = '';
    for (let i = 0; i < n; i++) s += pick(syllables);
    return s.charAt(0).toUpperCase() + s.slice(1);
  };

  mkdirSync(dirname(path), { recursive: true });
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true });
  const db = new DatabaseSync(path);
  let rows = 0;
  try {
    if (options.wal === true) db.exec('PRAGMA journal_mode=WAL');
    db.exec('PRAGMA user_version=42');
    db.exec('BEGIN');
    db.exec(SCHEMA);

    const users = Math.max(5, Math.ceil(patients / 50));
    const insUser = db.prepare('INSERT INTO users(id, username, display_name, role, active) VALUES(?, ?, ?, ?, ?)');
    for (let id = 1; id <= users; id++) {
      const display = `${name(FIRST, 2)} ${name(LAST, 2)}`;
      insUser.run(id, `user${String(id).padStart(3, '0')}`, display, pick(ROLES), rnd() < 0.9 ? 1 : 0);
      rows++;
    }

    const insPatient = db.prepare(
      'INSERT INTO patients(id, mrn, family_name, given_name, birth_date, sex, phone, address, weight_kg, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    const insEnc = db.prepare(
      'INSERT INTO encounters(id, patient_id, provider_id, started_at, kind, reason, status) VALUES(?, ?, ?, ?, ?, ?, ?)',
    );
    const insNote = db.prepare('INSERT INTO notes(id, encounter_id, author_id, created_at, body) VALUES(?, ?, ?, ?, ?)');
    const insDoc = db.prepare(
      'INSERT INTO documents(id, patient_id, path, mime_type, bytes, scanned_at, thumbnail) VALUES(?, ?, ?, ?, ?, ?, ?)',
    );
    let encId = 0;
    let noteId = 0;
    let docId = 0;
    for (let id = 1; id <= patients; id++) {
      const born = BASE - int(365, 90 * 365) * DAY;
      insPatient.run(
        id,
        `SYN${String(100_000 + id)}`,
        name(LAST, int(2, 3)),
        name(FIRST, int(2, 3)),
        iso(born).slice(0, 10),
        pick(['F', 'M', 'U']),
        rnd() < 0.85 ? `555-01${String(int(0, 99)).padStart(2, '0')}` : null,
        `${int(1, 999)} ${pick(STREETS)} St, Testville`,
        rnd() < 0.8 ? Math.round((40 + rnd() * 80) * 10) / 10 : null,
        iso(BASE + int(0, 365) * DAY),
      );
      rows++;
      const visits = int(1, 7);
      for (let v = 0; v < visits; v++) {
        encId++;
        const started = BASE + int(0, 5 * 365) * DAY + int(0, 86_399) * 1000;
        insEnc.run(encId, id, int(1, users), iso(started), pick(KINDS), rnd() < 0.9 ? pick(REASONS) : null, rnd() < 0.05 ? 'open' : 'closed');
        rows++;
        if (rnd() < 0.95) {
          noteId++;
          const lines: string[] = [];
          for (let l = int(1, 4); l > 0; l--) lines.push(pick(NOTE_LINES));
          insNote.run(noteId, encId, int(1, users), iso(started + int(5, 120) * 60_000), lines.join('\n'));
          rows++;
        }
      }
      const docs = int(0, 3);
      for (let d = 0; d < docs; d++) {
        docId++;
        const year = 2019 + int(0, 5);
        const thumb = new Uint8Array(int(16, 48));
        for (let b = 0; b < thumb.length; b++) thumb[b] = int(0, 255);
        insDoc.run(
          docId,
          id,
          `X/scans/${year}/doc-${String(docId).padStart(6, '0')}.pdf`,
          pick(MIMES),
          int(20_000, 4_000_000),
          iso(Date.UTC(year, 0, 1) + int(0, 364) * DAY),
          rnd() < 0.9 ? thumb : null,
        );
        rows++;
      }
    }

    const insMsg = db.prepare(
      'INSERT INTO interface_queue(id, message_type, patient_id, payload, status, created_at, sent_at) VALUES(?, ?, ?, ?, ?, ?, ?)',
    );
    const messages = Math.ceil(patients / 4);
    for (let id = 1; id <= messages; id++) {
      const pid = int(1, patients);
      const type = pick(['ADT^A08', 'ADT^A04', 'ORU^R01', 'SIU^S12']);
      const created = BASE + int(0, 5 * 365) * DAY;
      const payload = `MSH|^~\\&|EHR|CLINIC|LAB|HUB|${iso(created)}||${type}|MSG${id}|P|2.5\rPID|1||SYN${100_000 + pid}||SYNTHETIC^PATIENT`;
      const sent = rnd() < 0.8;
      insMsg.run(id, type, pid, payload, sent ? 'sent' : 'pending', iso(created), sent ? iso(created + 60_000) : null);
      rows++;
    }
    db.exec('COMMIT');
    return { tables: 6, rows };
  } catch (e) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw e;
  } finally {
    db.close();
  }
}

/**
 * Adds one encounter (for drift tests): the next id, for the patient with
 * the lowest id. Not idempotent by design: each call is one more change.
 * Returns the new encounter's id.
 */
export function mutateSyntheticEhr(path: string): { encounterId: number } {
  const db = new DatabaseSync(path);
  try {
    const next = db.prepare('SELECT coalesce(max(id), 0) + 1 AS id FROM encounters').get() as { id: number };
    const patient = db.prepare('SELECT min(id) AS id FROM patients').get() as { id: number | null };
    db.prepare(
      "INSERT INTO encounters(id, patient_id, provider_id, started_at, kind, reason, status) VALUES(?, ?, 1, ?, 'office', 'added after capture', 'open')",
    ).run(next.id, patient.id ?? 1, iso(BASE + 6 * 365 * DAY));
    return { encounterId: Number(next.id) };
  } finally {
    db.close();
  }
}
