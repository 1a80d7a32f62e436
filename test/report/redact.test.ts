import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { REDACTED, redact, redactDeep } from '../../src/report/redact.ts';
import { assertProperty } from '../support/seed.ts';

describe('redact', () => {
  it.each([
    ['Server=db01;User ID=sa;Password=Hunter2!;Encrypt=true', 'Hunter2!', 'Password=[redacted];'],
    ['sqlcmd -S db01 -U sa -P x pwd=s3cret', 's3cret', 'pwd=[redacted]'],
    ['vendor-backup.cmd /password=Tr0ub4dor', 'Tr0ub4dor', '/password=[redacted]'],
    ['https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2030&sr=b&sp=r&sig=AbC%2Fdef%3D', 'AbC%2Fdef%3D', 'sig=[redacted]'],
    ['DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy==;EndpointSuffix=core.windows.net', 'Zm9vYmFy==', 'AccountKey=[redacted]'],
    ['restic -r sftp://backup:pa55word@nas/restic snapshots', 'pa55word', 'sftp://backup:[redacted]@nas'],
    ['Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', 'eyJhbGciOiJIUzI1NiJ9', 'Bearer [redacted]'],
    ['client_secret: "abc def"', 'abc def', 'client_secret: [redacted]'],
    ['pg_dump --password hunter3 ehr', 'hunter3', '--password [redacted]'],
    ['patient SSN 123-45-6789 in note', '123-45-6789', 'SSN [redacted]'],
  ])('strips the secret from %s', (input, secret, expected) => {
    const out = redact(input);
    expect(out).not.toContain(secret);
    expect(out).toContain(expected);
  });

  it('leaves ordinary report text alone', () => {
    for (const s of [
      'secret:tde-cert',
      'instance-object:secret:backup-key',
      'PRAGMA integrity_check: ok',
      '2025-03-08T01:00:00.000Z',
      'ehr/A/import/batch-0042.hl7',
      "The vendor's backup job produces backups that cannot be restored.",
      'gate rules pass: 12',
    ])
      expect(redact(s)).toBe(s);
  });

  it.each(['password=""(', "pwd=''x", 'sig="a b"c', 'password=[redacted](', 'https://u:p@h password=', ' --password "" x'])('is idempotent on %j', (s) => {
    const once = redact(s);
    expect(redact(once)).toBe(once);
  });

  it('is idempotent (property, seeded)', () => {
    // Text made of the pieces the patterns care about, so quotes, separators and redacted values meet often.
    const piece = fc.constantFrom('password', 'pwd', 'sig', 'token', 'Bearer ', 'https://u:', '@', '=', ':', ': ', '"', "'", ' ', ';', '&', ',', '(', REDACTED, '[', '123-45-6789', ' --password ', 'x', '/');
    const text = fc.oneof(fc.string(), fc.array(piece, { maxLength: 14 }).map((a) => a.join('')));
    assertProperty(
      fc.property(text, fc.constantFrom('password=', 'sig=', 'pwd=', 'https://u:', 'Bearer ', ''), text, (a, key, b) => {
        const once = redact(a + key + b);
        expect(redact(once)).toBe(once);
      }),
      { numRuns: 2000 },
    );
  });

  it('redactDeep walks objects and arrays without mutating them', () => {
    const input = { a: ['x password=p1 y', { b: 'sig=abc' }], n: 3, t: true, z: null };
    const out = redactDeep(input);
    expect(out).toEqual({ a: [`x password=${REDACTED} y`, { b: `sig=${REDACTED}` }], n: 3, t: true, z: null });
    expect(input.a[0]).toBe('x password=p1 y');
  });
});
