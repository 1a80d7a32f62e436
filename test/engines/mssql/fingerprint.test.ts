/**
 * The SQL Server fingerprint (issue 11, item 3): every stored column is in
 * the row serialisation (alias types through their base type, text/ntext/
 * xml/sql_variant/CLR through their binary or (n)varchar(max) form, nothing
 * cut at 255 characters or 8000 bytes), rows are combined by sums of
 * SHA-256 slices (a duplicated pair changes it, unlike CHECKSUM_AGG's XOR),
 * and what it cannot see is listed. The statements themselves are parsed by
 * Microsoft's parser in tsql-parse.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { tableHash, tablesOf } from '../../../src/engines/mssql/fingerprint.ts';
import { columnBytes, rowSerialisation, tableHashStatement } from '../../../src/engines/mssql/sql.ts';
import { createMssqlEngine } from '../../../src/engines/mssql/engine.ts';
import { one, rs, scripted } from './fixtures.ts';

const row = (n: number, sums: string[]) => ({ row_count: n, s1: sums[0], s2: sums[1], s3: sums[2], s4: sums[3], s5: sums[4] });

describe('mssql fingerprint', () => {
  it('reads types through TYPE_NAME(system_type_id): an alias type over ntext is hashed as ntext, not left out', () => {
    const [t] = tablesOf([
      { schema_name: 'dbo', table_name: 'Notes', column_name: 'id', base_type: 'int', declared_type: 'int', is_assembly_type: 0, is_computed: 0, is_column_set: 0 },
      { schema_name: 'dbo', table_name: 'Notes', column_name: 'body', base_type: 'ntext', declared_type: 'ClinicalNote', is_assembly_type: 0, is_computed: 0, is_column_set: 0 },
      { schema_name: 'dbo', table_name: 'Notes', column_name: 'doc', base_type: 'xml', declared_type: 'VendorXml', is_assembly_type: 0, is_computed: 0, is_column_set: 0 },
      { schema_name: 'dbo', table_name: 'Notes', column_name: 'shape', base_type: null, declared_type: 'geography', is_assembly_type: 1, is_computed: 0, is_column_set: 0 },
      { schema_name: 'dbo', table_name: 'Notes', column_name: 'len', base_type: 'int', declared_type: 'int', is_assembly_type: 0, is_computed: 1, is_column_set: 0 },
      { schema_name: 'dbo', table_name: 'Notes', column_name: 'extra', base_type: 'xml', declared_type: 'xml', is_assembly_type: 0, is_computed: 0, is_column_set: 1 },
    ]);
    expect(t!.hashed).toEqual([
      { name: 'id', baseType: 'int' },
      { name: 'body', baseType: 'ntext' },
      { name: 'doc', baseType: 'xml' },
      { name: 'shape', baseType: 'clr' },
    ]);
    expect(t!.unhashed).toEqual(['len (computed: derived from other columns)', 'extra (sparse column set: derived from the sparse columns, which are hashed)']);
  });

  it('serialises every column length-prefixed and NULL-marked, the whole value (no 255-character or 8000-byte cut)', () => {
    const text = rowSerialisation([{ name: 'notes', baseType: 'nvarchar' }, { name: 'body', baseType: 'ntext' }, { name: 'v', baseType: 'sql_variant' }]);
    expect(text).toContain('CASE WHEN r.[notes] IS NULL THEN 0x00 ELSE 0x01 + CAST(CAST(DATALENGTH(CAST(r.[notes] AS varbinary(max))) AS bigint) AS binary(8)) + CAST(r.[notes] AS varbinary(max)) END');
    expect(columnBytes({ name: 'body', baseType: 'ntext' })).toBe('CAST(CAST(r.[body] AS nvarchar(max)) AS varbinary(max))');
    expect(columnBytes({ name: 'b', baseType: 'text' })).toBe('CAST(CAST(r.[b] AS varchar(max)) AS varbinary(max))');
    expect(columnBytes({ name: 'v', baseType: 'sql_variant' })).toContain("SQL_VARIANT_PROPERTY(r.[v], 'BaseType')");
    const stmt = tableHashStatement('EHR', 'dbo', 'Notes', [{ name: 'notes', baseType: 'nvarchar' }]);
    expect(stmt.text).toContain("HASHBYTES('SHA2_256', CAST(0x AS varbinary(max))");
    expect(stmt.text).toContain('SUM(CAST(CAST(SUBSTRING(x.h, 29, 4) AS bigint) AS decimal(38, 0))) AS s5');
    expect(stmt.text).not.toMatch(/BINARY_CHECKSUM|CHECKSUM_AGG|\(255\)|varchar\(8000\)/);
  });

  it('the table hash covers the column list, the count and every slice sum: a duplicated row pair (same count, other sums) differs', () => {
    const cols = [{ name: 'id', baseType: 'int' }];
    const a = tableHash(cols, row(4, ['10', '20', '30', '40', '50']));
    // with XOR two equal rows cancel: (A,B,C,C) ≡ (A,B,D,D). Sums keep them apart.
    expect(tableHash(cols, row(4, ['12', '20', '30', '40', '50']))).not.toBe(a);
    expect(tableHash(cols, row(4, ['10', '20', '30', '40', '51']))).not.toBe(a);
    expect(tableHash([{ name: 'id', baseType: 'bigint' }], row(4, ['10', '20', '30', '40', '50']))).not.toBe(a);
    expect(tableHash(cols, row(4, ['10', '20', '30', '40', '50']))).toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  it('refuses SQL Server 2014 and older: HASHBYTES there reads at most 8000 bytes of a row', async () => {
    const t = await scripted();
    try {
      t.server.on(/AS edition;$/, one(rs([['product_version', 'nvarchar'], ['edition', 'nvarchar']], [{ product_version: '12.0.6024.0', edition: 'Standard Edition (64-bit)' }])));
      const e = createMssqlEngine({ connection: t.config, backupDirectory: '/b' });
      const item = { id: 'database:mssql:EHR', kind: 'database' as const, name: 'EHR', declared: true, discovered: true, location: '', facts: {}, why: [], methods: [] };
      await expect(e.fingerprint({ host: { name: 'h', kind: 'local', resolve: (p: string) => p, exec: () => { throw new Error('no'); } } as never, workDir: '/tmp' }, item)).rejects.toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringContaining('need SQL Server 2016 or later') });
      expect(t.server.find(/HASHBYTES/)).toEqual([]);
    } finally {
      await t.stop();
    }
  });
});
