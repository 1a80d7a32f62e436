/**
 * The scripted TDS endpoint, exercised with the real `mssql` package
 * (tedious underneath): if these pass, the driver accepted our PRELOGIN,
 * LOGIN7 reply, COLMETADATA/ROW encodings and DONE/ERROR/INFO tokens, and
 * the endpoint decoded the driver's SQL batches and sp_executesql RPCs.
 */
import sql from 'mssql';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TdsServer } from './server.ts';

let server: TdsServer;
let pool: sql.ConnectionPool;

async function connect(user = 'rubicon'): Promise<sql.ConnectionPool> {
  const p = new sql.ConnectionPool({
    server: '127.0.0.1',
    port: server.port,
    user,
    password: 'x',
    database: 'EHR',
    options: { encrypt: false, trustServerCertificate: true },
    pool: { max: 1 },
    connectionTimeout: 5000,
    requestTimeout: 5000,
  });
  await p.connect();
  return p;
}

beforeEach(async () => {
  server = new TdsServer();
  await server.start();
});
afterEach(async () => {
  await pool?.close().catch(() => undefined);
  await server.stop();
});

describe('scripted TDS endpoint with the real mssql client', () => {
  it('round-trips every column type it implements, NULLs included', async () => {
    server.on(/FROM types/, {
      resultSets: [
        {
          columns: [
            { name: 'i', type: 'int' },
            { name: 'b', type: 'bigint' },
            { name: 's', type: 'smallint' },
            { name: 't', type: 'tinyint' },
            { name: 'bit', type: 'bit' },
            { name: 'f', type: 'float' },
            { name: 'n', type: 'nvarchar' },
            { name: 'v', type: 'varbinary' },
            { name: 'd', type: 'datetime' },
            { name: 'dec', type: 'decimal', precision: 25, scale: 0 },
            { name: 'g', type: 'uniqueidentifier' },
          ],
          rows: [
            { i: -42, b: 9007199254740993n, s: -7, t: 200, bit: true, f: 1.5, n: "O'Brien ]; ✓", v: Buffer.from([0, 1, 255]), d: new Date('2025-01-10T02:03:04.000Z'), dec: '37000000043200001', g: '6F9619FF-8B86-D011-B42D-00C04FC964FF' },
            {},
          ],
        },
      ],
    });
    pool = await connect();
    const r = await pool.request().query('SELECT * FROM types');
    const [a, nulls] = r.recordset;
    expect(a.i).toBe(-42);
    expect(String(a.b)).toBe('9007199254740993');
    expect(a.s).toBe(-7);
    expect(a.t).toBe(200);
    expect(a.bit).toBe(true);
    expect(a.f).toBe(1.5);
    expect(a.n).toBe("O'Brien ]; ✓");
    expect(Buffer.from(a.v).toString('hex')).toBe('0001ff');
    expect((a.d as Date).toISOString()).toBe('2025-01-10T02:03:04.000Z');
    expect(a.dec).toBe(37000000043200001);
    expect(a.g).toBe('6F9619FF-8B86-D011-B42D-00C04FC964FF');
    expect(Object.values(nulls).every((v) => v === null)).toBe(true);
  });

  it('decodes sp_executesql: statement, declarations and typed parameter values', async () => {
    server.on(/@path/, {});
    pool = await connect();
    const req = pool.request();
    req.input('path', sql.NVarChar(sql.MAX), "D:\\Backup\\it's.bak");
    req.input('n', sql.Int, 3);
    req.input('big', sql.BigInt, 5_000_000_000);
    req.input('flag', sql.Bit, false);
    req.input('bin', sql.VarBinary(sql.MAX), Buffer.from('abc'));
    req.input('when', sql.DateTime2(7), new Date('2025-02-03T04:05:06Z'));
    await req.query('BACKUP DATABASE [x] TO DISK = @path');
    const [got] = server.find(/@path/);
    expect(got?.sql).toBe('BACKUP DATABASE [x] TO DISK = @path');
    expect(got?.procedure).toBe('sp_executesql');
    expect(got?.declarations).toContain('@path nvarchar(max)');
    expect(got?.params.path).toBe("D:\\Backup\\it's.bak");
    expect(got?.params.n).toBe(3);
    expect(got?.params.big).toBe(5_000_000_000n);
    expect(got?.params.flag).toBe(false);
    expect(Buffer.from(got?.params.bin as Buffer).toString()).toBe('abc');
    expect((got?.params.when as Date).toISOString()).toBe('2025-02-03T04:05:06.000Z');
    expect(got?.database).toBe('EHR');
  });

  it('records a SQL batch and answers INFO then ERROR tokens, keeping every error', async () => {
    server.on(/RESTORE/, {
      infos: [{ number: 3211, message: '10 percent processed.' }],
      errors: [
        { number: 3183, class: 16, message: 'RESTORE detected an error on page (1:1234) in database "x".' },
        { number: 3013, class: 16, message: 'RESTORE DATABASE is terminating abnormally.' },
      ],
    });
    pool = await connect();
    const infos: number[] = [];
    const req = pool.request();
    req.on('info', (i: { number: number }) => infos.push(i.number));
    const err = (await req.batch('RESTORE DATABASE x').catch((e: unknown) => e)) as { number: number; precedingErrors: { number: number }[] };
    expect(infos).toEqual([3211]);
    expect(err.number).toBe(3013);
    expect(err.precedingErrors.map((e) => e.number)).toEqual([3183]);
    expect(server.statements()).toEqual(['RESTORE DATABASE x']);
    expect(server.requests.some((r) => r.internal)).toBe(true);
  });

  it('answers an unscripted statement with error 50000 naming it, and honours `times`', async () => {
    server.on(/SELECT state/, { resultSets: [{ columns: [{ name: 's', type: 'nvarchar' }], rows: [{ s: 'running' }] }] }, { times: 1 });
    server.on(/SELECT state/, { resultSets: [{ columns: [{ name: 's', type: 'nvarchar' }], rows: [{ s: 'stopped' }] }] });
    pool = await connect();
    expect((await pool.request().query('SELECT state')).recordset[0].s).toBe('running');
    expect((await pool.request().query('SELECT state')).recordset[0].s).toBe('stopped');
    const err = (await pool.request().query('DROP DATABASE nope').catch((e: unknown) => e)) as { number: number; message: string };
    expect(err.number).toBe(50000);
    expect(err.message).toContain('DROP DATABASE nope');
  });

  it('refuses a login with Msg 18456', async () => {
    server = new TdsServer({ refuseUsers: ['intruder'] });
    await server.start();
    const err = (await connect('intruder').catch((e: unknown) => e)) as Error;
    expect(err.message).toContain("Login failed for user 'intruder'");
  });
});
