import { describe, expect, it } from 'vitest';
import { movePath, serverJoin, testDatabaseName } from '../../../src/engines/mssql/artifact.ts';
import {
  canRestoreOnto,
  hhmmssToSeconds,
  judgeJobRun,
  newestChain,
  parseVersion,
  canCompress,
  checkDbRan,
  sameExactLsn,
  sameLsn,
  withinRun,
  type HistoryRow,
  type JobHistoryRow,
} from '../../../src/engines/mssql/parse.ts';
import { urlStripes } from '../../../src/engines/mssql/sql.ts';

describe('versions', () => {
  it('parses ProductVersion and refuses an older proving ground', () => {
    expect(parseVersion('16.0.4135.4')).toEqual({ major: 16, minor: 0, build: 4135 });
    expect(parseVersion('garbage')).toBeNull();
    const v2019 = parseVersion('15.0.4355.3')!;
    expect(canRestoreOnto(v2019, parseVersion('16.0.1000.6')!)).toBe(true);
    expect(canRestoreOnto(v2019, parseVersion('15.0.2000.5')!)).toBe(true);
    expect(canRestoreOnto(v2019, parseVersion('14.0.3456.2')!)).toBe(false);
    expect(canRestoreOnto(parseVersion('10.50.6000.34')!, parseVersion('10.0.6000.29')!)).toBe(false);
  });
});

const step = (stepId: number, runStatus: number, stepName = `step ${stepId}`, message = ''): JobHistoryRow => ({
  instanceId: stepId === 0 ? 100 : stepId,
  stepId,
  stepName,
  runStatus,
  runDurationSeconds: 1,
  message,
  sqlMessageId: runStatus === 0 ? 3013 : 0,
  sqlSeverity: runStatus === 0 ? 16 : 0,
});

describe('judgeJobRun', () => {
  it('passes only when step 0 and every step succeeded', () => {
    expect(judgeJobRun([step(1, 1), step(2, 1), step(0, 1)]).ok).toBe(true);
  });
  it('catches the job that "succeeded" with a failed step, naming the step', () => {
    const v = judgeJobRun([step(1, 1), step(2, 0, 'Verify backup', 'RESTORE VERIFYONLY failed'), step(0, 1, '(Job outcome)', 'The job succeeded.')]);
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual(['step 2 "Verify backup" failed (Msg 3013): RESTORE VERIFYONLY failed']);
  });
  it('a retried step that finally succeeded is fine; a missing outcome row is not', () => {
    expect(judgeJobRun([step(1, 2), { ...step(1, 1), instanceId: 2 }, step(0, 1)]).ok).toBe(true);
    expect(judgeJobRun([step(1, 1)]).problems[0]).toMatch(/no job outcome/);
  });
  it('reads run_duration as HHMMSS', () => {
    expect(hhmmssToSeconds(13005)).toBe(3605 + 1800);
  });
});

function h(p: Partial<HistoryRow> & Pick<HistoryRow, 'backupSetId' | 'type' | 'firstLsn' | 'lastLsn'>): HistoryRow {
  return {
    databaseName: 'EHR',
    isCopyOnly: false,
    backupStartDate: null,
    backupFinishDate: null,
    checkpointLsn: p.firstLsn,
    databaseBackupLsn: '0',
    hasBackupChecksums: true,
    isDamaged: false,
    databaseGuid: 'G1',
    mediaSetId: p.backupSetId,
    position: 1,
    backupSize: 0,
    compressedBackupSize: 0,
    encryptorThumbprint: null,
    physicalDeviceName: `D:\\b\\${p.backupSetId}.bak`,
    deviceType: 2,
    familySequenceNumber: 1,
    backupSetUuid: `GUID-${p.backupSetId}`,
    lastRecoveryForkGuid: 'F1',
    mirror: 0,
    ...p,
  };
}

describe('newestChain', () => {
  const full1 = h({ backupSetId: 1, type: 'D', firstLsn: '100', lastLsn: '200', checkpointLsn: '150' });
  const full2 = h({ backupSetId: 5, type: 'D', firstLsn: '1000', lastLsn: '1100', checkpointLsn: '1050' });
  const diff = h({ backupSetId: 6, type: 'I', firstLsn: '1200', lastLsn: '1300', databaseBackupLsn: '1050' });
  const staleDiff = h({ backupSetId: 3, type: 'I', firstLsn: '300', lastLsn: '400', databaseBackupLsn: '150' });
  const log1 = h({ backupSetId: 7, type: 'L', firstLsn: '1250', lastLsn: '1400' });
  const log2 = h({ backupSetId: 8, type: 'L', firstLsn: '1400', lastLsn: '1500' });
  const gapLog = h({ backupSetId: 9, type: 'L', firstLsn: '1600', lastLsn: '1700' });

  it('takes the newest full by LSN, the newest diff on it, and the unbroken logs after', () => {
    const c = newestChain([gapLog, log2, log1, diff, staleDiff, full2, full1])!;
    expect(c.full.row.backupSetId).toBe(5);
    expect(c.diff?.row.backupSetId).toBe(6);
    expect(c.logs.map((l) => l.row.backupSetId)).toEqual([7, 8]);
    expect(c.notes).toEqual(['log chain broken after LSN 1500: next log backup starts at 1600']);
  });
  it('ignores copy-only fulls unless asked, and sets not on disk', () => {
    const copy = h({ backupSetId: 10, type: 'D', firstLsn: '5000', lastLsn: '5100', isCopyOnly: true });
    const vdi = h({ backupSetId: 11, type: 'D', firstLsn: '6000', lastLsn: '6100', deviceType: 7, physicalDeviceName: '{GUID}' });
    expect(newestChain([copy, vdi, full1])!.full.row.backupSetId).toBe(1);
    expect(newestChain([copy, full1], { includeCopyOnly: true })!.full.row.backupSetId).toBe(10);
    expect(newestChain([vdi])).toBeNull();
  });
  it('groups stripes of one set in family order', () => {
    const s1 = h({ backupSetId: 20, type: 'D', firstLsn: '1', lastLsn: '2', familySequenceNumber: 2, physicalDeviceName: 'D:\\b\\s2.bak' });
    const s2 = { ...s1, familySequenceNumber: 1, physicalDeviceName: 'D:\\b\\s1.bak' };
    expect(newestChain([s1, s2])!.full.devices).toEqual(['D:\\b\\s1.bak', 'D:\\b\\s2.bak']);
  });
});

describe('paths and names', () => {
  it('joins with the server OS separator', () => {
    expect(serverJoin('D:\\Data', 'a.mdf')).toBe('D:\\Data\\a.mdf');
    expect(serverJoin('D:\\Data\\', 'a.mdf')).toBe('D:\\Data\\a.mdf');
    expect(serverJoin('/var/opt/mssql/data', 'a.mdf')).toBe('/var/opt/mssql/data/a.mdf');
    expect(serverJoin('\\\\nas\\share', 'a.bak')).toBe('\\\\nas\\share\\a.bak');
  });
  it('gives every file of the test database its own path', () => {
    const t = testDatabaseName('EHR', 'run1.capture.database:mssql:EHR.mssql-native-full');
    expect(t).toMatch(/^rubicon-prove-EHR-[0-9a-f]{10}$/);
    expect(movePath('D:\\Data', 'L:\\Log', t, { type: 'D', fileId: 1 })).toMatch(/^D:\\Data\\rubicon-prove-EHR-.*_1\.mdf$/);
    expect(movePath('D:\\Data', 'L:\\Log', t, { type: 'D', fileId: 3 })).toMatch(/_3\.ndf$/);
    expect(movePath('D:\\Data', 'L:\\Log', t, { type: 'L', fileId: 2 })).toMatch(/^L:\\Log\\.*_2\.ldf$/);
  });
  it('compares a header LSN (double) with an exact msdb LSN: equal doubles only, no tolerance; exact LSNs as integers', () => {
    expect(sameLsn(37000000043200001, '37000000043200001')).toBe(true);
    expect(sameLsn(37000000043200001, '37000000043300001')).toBe(false);
    // 37000000043200001 and …0016 round to different doubles; the old one-ulp tolerance called them the same
    expect(sameLsn(Number('37000000043200001'), '37000000043200016')).toBe(false);
    expect(sameLsn(1, '')).toBe(false);
    expect(sameExactLsn('37000000043200001', '37000000043200002')).toBe(false);
    expect(sameExactLsn('37000000043200001', '037000000043200001')).toBe(true);
  });
  it('stripes URL backups per started 100 GB, 1..64', () => {
    expect(urlStripes(1)).toBe(1);
    expect(urlStripes(250 * 1024 ** 3)).toBe(3);
    expect(urlStripes(1e15)).toBe(64);
  });
  it('decides compression by EngineEdition, Web apart from Standard (Msg 1844)', () => {
    expect(canCompress(3, 'Enterprise Edition (64-bit)')).toBe(true);
    expect(canCompress(2, 'Standard Edition (64-bit)')).toBe(true);
    expect(canCompress(2, 'Web Edition (64-bit)')).toBe(false);
    expect(canCompress(4, 'Express Edition (64-bit)')).toBe(false);
    expect(canCompress(0, '')).toBe(false);
  });
  it('a backup belongs to a job run only when it started within it', () => {
    expect(withinRun('2025-01-10T02:00:01.000Z', '2025-01-10T02:00:00.500Z', '2025-01-10T02:10:00.000Z')).toBe(true);
    expect(withinRun('2025-01-10T01:59:59.000Z', '2025-01-10T02:00:00.500Z', '2025-01-10T02:10:00.000Z')).toBe(false);
    expect(withinRun('2025-01-10T02:10:01.000Z', '2025-01-10T02:00:00.500Z', '2025-01-10T02:10:00.000Z')).toBe(false);
    expect(withinRun(null, '2025-01-10T02:00:00.500Z', null)).toBe(false);
  });
  it('CHECKDB ran only when LastGoodCheckDbTime >= the clock before it (to the second); NULL never', () => {
    const before = new Date('2025-01-10T02:00:00.700Z');
    expect(checkDbRan(before, new Date('2025-01-10T02:00:00.000Z')).ok).toBe(true);
    expect(checkDbRan(before, new Date('2025-01-10T01:59:59.997Z')).ok).toBe(false);
    expect(checkDbRan(before, null).ok).toBe(false);
    expect(checkDbRan(null, new Date()).ok).toBe(false);
  });
});
