/**
 * Every statement the SQL Server engine can send, parsed by Microsoft's own
 * T-SQL parser (Microsoft.SqlServer.TransactSql.ScriptDom, loaded into
 * PowerShell 7 with Add-Type) for SQL Server 2016 (TSql130Parser) and 2022
 * (TSql160Parser): 0 errors. The scripted TDS endpoint answers by pattern
 * and cannot tell wrong T-SQL; this can. All statements go through ONE pwsh
 * process (test/tsql/scriptdom.ps1).
 *
 * Needs pwsh and the ScriptDom package (.ci/run installs both). In CI a
 * missing tool fails this suite; elsewhere it is skipped with the reason.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as sql from '../../../src/engines/mssql/sql.ts';
import { parseAll, scriptDomMissing, type ParseResults } from '../../tsql/scriptdom.ts';
import { catalog, COVERED, evalConcat, HOSTILE } from '../../tsql/statements.ts';

const missing = scriptDomMissing();
if (missing && process.env.CI) throw new Error(`tsql-parse: ${missing}`);

/** Statements that must NOT parse: proof that the parser is really consulted, and that TSql130 is really 2016. */
const BROKEN = [
  { id: 'broken: doubled comma', text: 'BACKUP DATABASE [EHR] TO DISK = @path WITH COPY_ONLY,, CHECKSUM;' },
  { id: 'broken: unclosed bracket', text: 'DBCC CHECKDB ([EHR) WITH NO_INFOMSGS;' },
  { id: 'broken: identifier not quoted', text: "RESTORE DATABASE x]; DROP DATABASE master; -- FROM DISK = @file1;" },
];
/**
 * Valid on 2022, not on 2016: graph tables (AS NODE) came with SQL Server
 * 2017. (STRING_AGG, which the logins query used to need, is a function
 * call to the parser: SQL Server 2016 refuses it when binding, not parsing,
 * so the capture tests check that no statement sends it.)
 */
const NEWER = { id: 'newer: AS NODE', text: 'CREATE TABLE dbo.Referrals (id int) AS NODE;' };

describe.skipIf(missing !== undefined)(`T-SQL parsed by Microsoft's ScriptDom (TSql130Parser, TSql160Parser)${missing ? ` — skipped: ${missing}` : ''}`, () => {
  const statements = catalog();
  let results: ParseResults = { parsed: { '130': 0, '160': 0 }, failures: [] };

  beforeAll(async () => {
    results = await parseAll([...statements, ...BROKEN, NEWER]);
  }, 120_000);

  it('covers every statement builder of sql.ts', () => {
    const builders = Object.entries(sql).filter(([name, v]) => typeof v === 'function' && name.endsWith('Statement')).map(([name]) => name);
    expect(builders.filter((n) => !COVERED.has(n))).toEqual([]);
    expect(statements.length).toBeGreaterThan(500);
    expect(statements.some((s) => s.id.includes('(inner'))).toBe(true);
  });

  it('every statement, script and server-assembled inner statement parses with 0 errors for SQL Server 2016 and 2022', () => {
    expect(statements.every((s) => !/STRING_AGG/.test(s.text))).toBe(true);
    const bad = results.failures.filter((r) => !r.id.startsWith('broken:') && !r.id.startsWith('newer:'));
    const shown = bad.slice(0, 10).map((r) => `${r.id} [TSql${r.parser}Parser]: ${r.errors.join('; ')}\n${statements.find((s) => s.id === r.id)?.text.slice(0, 400)}`);
    expect(shown).toEqual([]);
    expect(results.parsed).toEqual({ '130': statements.length + BROKEN.length + 1, '160': statements.length + BROKEN.length + 1 });
  });

  it('a deliberately broken statement is caught by both parsers', () => {
    for (const b of BROKEN) {
      for (const p of ['130', '160']) expect(results.failures.find((r) => r.id === b.id && r.parser === p)?.errors.length, `${b.id} TSql${p}`).toBeGreaterThan(0);
    }
  });

  it('TSql130Parser is SQL Server 2016: 2017 syntax (AS NODE) fails there and parses for 2022', () => {
    expect(results.failures.find((r) => r.id === NEWER.id && r.parser === '130')?.errors.length).toBeGreaterThan(0);
    expect(results.failures.find((r) => r.id === NEWER.id && r.parser === '160')).toBeUndefined();
  });
});

describe('inner statements assembled like the server does', () => {
  it('QUOTENAME and quote doubling, as SQL Server computes them', () => {
    expect(evalConcat("N'BACKUP CERTIFICATE ' + QUOTENAME(@c) + N' TO FILE = N''' + REPLACE(@f, N'''', N'''''') + N''''", { c: HOSTILE[1]!, f: "a'b" })).toBe(
      "BACKUP CERTIFICATE [x]]'; DROP DATABASE master; --] TO FILE = N'a''b'",
    );
  });
});
