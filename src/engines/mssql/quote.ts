/**
 * The only two ways a name or a value ever becomes T-SQL text in the mssql
 * engine.
 *
 * - quoteIdentifier: every identifier in a statement Rubicon sends (database,
 *   schema, table, certificate, login) goes through it: `[` + name with each
 *   `]` doubled + `]`, exactly what QUOTENAME() does, so no name can close the
 *   bracket and append SQL.
 * - sqlStringLiteral: only for the T-SQL *scripts* Rubicon writes as artifacts
 *   (instance-objects: CREATE LOGIN …, sp_add_job …) that a person or the
 *   landing phase runs later. Statements Rubicon sends itself never contain a
 *   value: values travel as parameters (request.input), and where T-SQL
 *   accepts only a literal (BACKUP CERTIFICATE's password, CREATE CERTIFICATE
 *   FROM FILE) the server builds the literal from parameters (see sql.ts).
 *
 * Contract: pure; throws RubiconError(ARGUMENTS_INVALID) for a name SQL
 * Server itself could not hold (empty, longer than 128 characters, NUL).
 */
import { RubiconError } from '../../core/errors.ts';

/** sysname is nvarchar(128): longer names cannot exist on the server. */
export const MAX_IDENTIFIER_LENGTH = 128;

export function quoteIdentifier(name: string): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new RubiconError('ARGUMENTS_INVALID', 'mssql: an empty identifier cannot be quoted', {
      hint: 'Check the database, table or object name in the runbook.',
    });
  }
  if (name.length > MAX_IDENTIFIER_LENGTH) {
    throw new RubiconError(
      'ARGUMENTS_INVALID',
      `mssql: identifier "${name.slice(0, 40)}…" is ${name.length} characters; SQL Server names are at most ${MAX_IDENTIFIER_LENGTH}`,
      { hint: 'Check the name in the runbook: no SQL Server object can have it.' },
    );
  }
  if (name.includes('\u0000')) {
    throw new RubiconError('ARGUMENTS_INVALID', 'mssql: identifier contains a NUL character', {
      hint: 'Check the name in the runbook: no SQL Server object can have it.',
    });
  }
  return `[${name.replaceAll(']', ']]')}]`;
}

/** `[a].[b]` from parts, each through quoteIdentifier. */
export function quoteQualified(...parts: string[]): string {
  return parts.map(quoteIdentifier).join('.');
}

/**
 * An N'…' literal with every `'` doubled, for generated scripts only (never
 * for a statement Rubicon sends). NUL characters are refused.
 */
export function sqlStringLiteral(value: string): string {
  if (value.includes('\u0000')) {
    throw new RubiconError('ARGUMENTS_INVALID', 'mssql: a script value contains a NUL character', {
      hint: 'The object this value came from cannot be scripted as T-SQL text.',
    });
  }
  return `N'${value.replaceAll("'", "''")}'`;
}

/** 0x… literal of binary data (a SID, a password hash): hex digits only, nothing to escape. */
export function sqlBinaryLiteral(value: Uint8Array): string {
  return `0x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex').toUpperCase()}`;
}
