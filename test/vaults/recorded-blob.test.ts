import { describe, expect, it } from 'vitest';
import { gradeRecordedBlob } from '../../src/vaults/recorded-blob.ts';

/** The rule SQL Server's URL stripes are graded by (the Azurite end of it: test/engines/mssql/url-capture.test.ts). */
describe('a recorded blob against the service', () => {
  const rec = { bytes: 10, etag: '"0x1"', contentMd5: 'AAAA' };
  it('as recorded: nothing to say', () => expect(gradeRecordedBlob(rec, { bytes: 10, etag: '"0x1"', contentMd5: 'AAAA' })).toBeUndefined());
  it('size first, then the MD5 (another, or none), then the ETag', () => {
    expect(gradeRecordedBlob(rec, { bytes: 11, etag: '"0x2"', contentMd5: 'BBBB' })).toEqual({ status: 'size-invalid', detail: '11 bytes, 10 at capture' });
    expect(gradeRecordedBlob(rec, { bytes: 10, etag: '"0x2"', contentMd5: 'BBBB' })).toMatchObject({ status: 'checksum-mismatch', detail: expect.stringContaining('Content-MD5 BBBB, AAAA at capture') });
    expect(gradeRecordedBlob(rec, { bytes: 10, etag: '"0x2"' })).toMatchObject({ status: 'checksum-mismatch', detail: expect.stringContaining('Content-MD5 (none), AAAA') });
    expect(gradeRecordedBlob(rec, { bytes: 10, etag: '"0x2"', contentMd5: 'AAAA' })).toEqual({ status: 'checksum-mismatch', detail: 'was rewritten after capture (ETag "0x2", "0x1" at capture)' });
  });
  it('an older record without MD5 or ETag is graded by what it has', () => {
    expect(gradeRecordedBlob({ bytes: 10 }, { bytes: 10, etag: 'x', contentMd5: 'y' })).toBeUndefined();
    expect(gradeRecordedBlob({ bytes: 10, etag: 'e' }, { bytes: 10, etag: 'f' })?.status).toBe('checksum-mismatch');
  });
});
