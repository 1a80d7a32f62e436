import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { compareFingerprints, makeFingerprint } from '../../../src/engines/fingerprint.ts';
import { fingerprintTables, openDatabase } from '../../../src/engines/sqlite/inspect.ts';
import { createSyntheticEhr, mutateSyntheticEhr } from '../../../src/sandbox/synthetic-ehr.ts';
import { tempDir } from './helpers.ts';

function fp(path: string) {
  const db = openDatabase(path, { readOnly: true });
  try {
    return makeFingerprint('sqlite', fingerprintTables(db));
  } finally {
    db.close();
  }
}

describe('createSyntheticEhr', () => {
  // How long it takes is the suite's business (it shows in the file's duration), not an assertion that flakes on a busy machine.
  it('builds the default estate (tens of thousands of rows) with the expected tables', () => {
    const path = join(tempDir(), 'ehr.db');
    const r = createSyntheticEhr(path);
    expect(r.tables).toBe(6);
    expect(r.rows).toBeGreaterThan(15_000);
    expect(r.rows).toBeLessThan(60_000);
    const f = fp(path);
    expect(f.tables.map((t) => t.table)).toEqual(['documents', 'encounters', 'interface_queue', 'notes', 'patients', 'users']);
    expect(f.tables.reduce((s, t) => s + t.rows, 0)).toBe(r.rows);
    const db = new DatabaseSync(path, { readOnly: true });
    expect(db.prepare('SELECT count(*) AS n FROM patients').get()).toEqual({ n: 2000 });
    // Fake identifiers only; document paths point into the folder the vendor forgot.
    expect(db.prepare("SELECT count(*) AS n FROM patients WHERE mrn NOT LIKE 'SYN%'").get()).toEqual({ n: 0 });
    expect(db.prepare("SELECT count(*) AS n FROM documents WHERE path NOT GLOB 'X/scans/20[0-9][0-9]/doc-[0-9][0-9][0-9][0-9][0-9][0-9].pdf'").get()).toEqual({ n: 0 });
    expect(db.prepare("SELECT count(*) AS n FROM documents WHERE typeof(thumbnail) = 'blob'").get()).not.toEqual({ n: 0 });
    expect(db.prepare("SELECT count(*) AS n FROM notes WHERE instr(body, char(10)) > 0").get()).not.toEqual({ n: 0 });
    db.close();
  });

  it('is deterministic for a seed and different across seeds', () => {
    const dir = tempDir();
    createSyntheticEhr(join(dir, 'a.db'), { patients: 100, seed: 7 });
    createSyntheticEhr(join(dir, 'b.db'), { patients: 100, seed: 7 });
    createSyntheticEhr(join(dir, 'c.db'), { patients: 100, seed: 8 });
    expect(fp(join(dir, 'a.db')).digest).toBe(fp(join(dir, 'b.db')).digest);
    expect(fp(join(dir, 'c.db')).digest).not.toBe(fp(join(dir, 'a.db')).digest);
  });

  it('replaces an existing database at the path', () => {
    const path = join(tempDir(), 'ehr.db');
    createSyntheticEhr(path, { patients: 30, seed: 1 });
    createSyntheticEhr(path, { patients: 30, seed: 1 });
    const db = new DatabaseSync(path, { readOnly: true });
    expect(db.prepare('SELECT count(*) AS n FROM patients').get()).toEqual({ n: 30 });
    db.close();
  });
});

describe('mutateSyntheticEhr', () => {
  it('adds exactly one encounter, which a fingerprint comparison names', () => {
    const path = join(tempDir(), 'ehr.db');
    createSyntheticEhr(path, { patients: 50 });
    const before = fp(path);
    const n = before.tables.find((t) => t.table === 'encounters')!.rows;
    expect(mutateSyntheticEhr(path).encounterId).toBe(n + 1);
    const cmp = compareFingerprints(before, fp(path));
    expect(cmp.differences).toEqual([`table encounters: ${n.toLocaleString('en-US')} rows expected, ${(n + 1).toLocaleString('en-US')} restored`]);
  });
});
