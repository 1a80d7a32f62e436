/**
 * The scripted TDS endpoint sends what SQL Server sends in the cases that
 * decide a false success (issue 11), and the engine's session (the real
 * mssql/tedious client) reads them right:
 * - INFO messages interleaved with errors and rows keep their order;
 * - an error mid-batch is followed by more results, which are kept;
 * - DONE with the ERROR bit and no ERROR token is a failure;
 * - a severity-20 error closes the connection (ENGINE_FAILED, not a SQL result);
 * - RESTORE progress ("N percent processed.") arrives over time, before the
 *   restore ends;
 * - TLS when the client asks for encryption, negotiated in PRELOGIN and
 *   handshaken inside TDS packets, with a throwaway openssl certificate.
 * Token layouts: [MS-TDS] 2.2.7 (DONE status bits 0x01 MORE, 0x02 ERROR),
 * 2.2.6.5 (PRELOGIN ENCRYPTION), 2.2.6.5/3.2.5.2 (TLS in PRELOGIN packets).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MssqlSession, type MssqlConnectionConfig, type SqlMessage } from '../../src/engines/mssql/session.ts';
import { TdsServer, type TdsResultSet } from './server.ts';

const rs = (name: string, values: number[]): TdsResultSet => ({ columns: [{ name, type: 'int' }], rows: values.map((v) => ({ [name]: v })) });

let server: TdsServer;
let session: MssqlSession | undefined;

const config = (o: Partial<MssqlConnectionConfig> = {}): MssqlConnectionConfig => ({ server: '127.0.0.1', port: server.port, user: 'rubicon', password: 'x', encrypt: false, trustServerCertificate: true, requestTimeoutMs: 10_000, connectTimeoutMs: 10_000, ...o });

async function start(options: ConstructorParameters<typeof TdsServer>[0] = {}): Promise<void> {
  server = new TdsServer(options);
  await server.start();
}

afterEach(async () => {
  await session?.close().catch(() => undefined);
  session = undefined;
  await server.stop();
});

describe('SQL Server-shaped replies read by the engine session', () => {
  it('INFO interleaved with rows and errors keeps the server\'s order; an error mid-batch is followed by more results, which are kept', async () => {
    await start();
    server.on(/^CHECK/, {
      parts: [
        { info: { number: 2528, message: 'DBCC execution completed.' } },
        { resultSet: rs('a', [1, 2]) },
        { error: { number: 8928, class: 16, message: 'Page (1:736) could not be processed.' } },
        { done: { error: true } },
        { info: { number: 8989, message: 'CHECKDB found 0 allocation errors and 1 consistency errors.' } },
        { resultSet: rs('b', [3]) },
      ],
    });
    session = await MssqlSession.connect(config());
    const out = await session.run({ text: 'CHECK it', params: [] });
    expect(out.ok).toBe(false);
    expect(out.messages.map((m) => `${m.kind}:${m.number}`)).toEqual(['info:2528', 'error:8928', 'info:8989']);
    expect(out.recordsets.map((r) => r.map((x) => Object.values(x)[0]))).toEqual([[1, 2], [3]]);
    expect(out.error?.number).toBe(8928);
  });

  it('several errors of one statement come back in order, each once', async () => {
    await start();
    server.on(/^RESTORE/, {
      parts: [
        { info: { number: 3211, message: '10 percent processed.' } },
        { error: { number: 3183, message: 'RESTORE detected an error on page (1:1234).' } },
        { error: { number: 3013, message: 'RESTORE DATABASE is terminating abnormally.' } },
      ],
    });
    session = await MssqlSession.connect(config());
    const out = await session.run({ text: 'RESTORE DATABASE x', params: [] });
    expect(out.messages.map((m) => `${m.kind}:${m.number}`)).toEqual(['info:3211', 'error:3183', 'error:3013']);
  });

  it('DONE with the ERROR bit and no ERROR token is a failure, not a success', async () => {
    await start();
    server.on(/^BACKUP/, { parts: [{ info: { number: 3014, message: 'BACKUP DATABASE successfully processed 370 pages.' } }], finalError: true });
    session = await MssqlSession.connect(config());
    const out = await session.run({ text: 'BACKUP DATABASE x', params: [] });
    expect(out.ok).toBe(false);
    expect(out.error?.message).toMatch(/unknown error/i);
  });

  it('a severity-20 error closes the connection: ENGINE_FAILED naming it, and the session is gone', async () => {
    await start();
    server.on(/^RESTORE/, { parts: [{ info: { number: 3211, message: '10 percent processed.' } }, { error: { number: 823, class: 24, message: 'The operating system returned error 21 to SQL Server during a read at offset 0x0000.' } }, { close: true }] });
    server.on(/^SELECT 2/, { resultSets: [rs('x', [2])] });
    session = await MssqlSession.connect(config());
    await expect(session.run({ text: 'RESTORE DATABASE x', params: [] })).rejects.toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringContaining('severity 24 error (Msg 823') });
    // The server closed that connection: whatever is still in flight on it is a lost connection, never a SQL result.
    await expect(session.run({ text: 'SELECT 2', params: [] })).rejects.toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringMatching(/socket hang up|connection/i) });
    expect(server.find(/^SELECT 2/)).toEqual([]);
  });

  it('RESTORE progress messages arrive over time, each before the restore has ended', async () => {
    await start();
    const steps = [10, 20, 30];
    const gates = steps.map(() => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    server.on(/^RESTORE/, {
      parts: [
        ...steps.flatMap((p, i) => [{ info: { number: 3211, message: `${p} percent processed.` } }, { flush: gates[i]!.promise }]),
        { info: { number: 3014, message: 'RESTORE DATABASE successfully processed 370 pages in 0.120 seconds (24.055 MB/sec).' } },
      ],
    });
    session = await MssqlSession.connect(config());
    const seen: string[] = [];
    let ended = false;
    const onMessage = (m: SqlMessage): void => {
      seen.push(`${m.number} ${m.message}${ended ? ' (after the end)' : ''}`);
      // The endpoint sends the next piece only when the test has seen this one: the client reads while the restore runs.
      const i = steps.findIndex((p) => m.message.startsWith(`${p} percent`));
      if (i >= 0) gates[i]!.resolve();
    };
    const out = await session.run({ text: 'RESTORE DATABASE x', params: [] }, undefined, onMessage);
    ended = true;
    expect(out.ok).toBe(true);
    expect(seen).toEqual(['3211 10 percent processed.', '3211 20 percent processed.', '3211 30 percent processed.', '3014 RESTORE DATABASE successfully processed 370 pages in 0.120 seconds (24.055 MB/sec).']);
  });
});

describe('TLS when the client asks for encryption', () => {
  let dir: string;
  let cert: Buffer;
  let key: Buffer;
  const openssl = existsSync('/usr/bin/openssl') ? '/usr/bin/openssl' : 'openssl';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rubicon-tds-tls-'));
    // A throwaway self-signed certificate for the endpoint (openssl is a CI tool: .ci/run installs it).
    await promisify(execFile)(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=rubicon-tds-test', '-addext', 'subjectAltName=DNS:rubicon-tds-test']);
    cert = await readFile(join(dir, 'cert.pem'));
    key = await readFile(join(dir, 'key.pem'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('negotiates ENCRYPT_ON in PRELOGIN, handshakes inside TDS packets, and carries LOGIN7 and every statement inside TLS', async () => {
    await start({ tls: { cert, key } });
    server.on(/^SELECT 42/, { resultSets: [rs('answer', [42])] });
    session = await MssqlSession.connect(config({ encrypt: true, trustServerCertificate: true }));
    const out = await session.run({ text: 'SELECT 42 AS answer /* over TLS */', params: [] });
    expect(out.recordsets[0]?.[0]?.answer).toBe(42);
    expect(server.logins.length).toBeGreaterThan(0);
    expect(server.logins.every((l) => l.encrypted && l.user === 'rubicon')).toBe(true);
    expect(server.find(/^SELECT 42/)[0]?.encrypted).toBe(true);
    // Nothing of the login or the statement crossed the wire in clear.
    const wire = Buffer.concat(server.wire);
    expect(wire.includes(Buffer.from('SELECT 42', 'utf16le'))).toBe(false);
    expect(wire.includes(Buffer.from('rubicon', 'utf16le'))).toBe(false);
    // The first packet is the client's clear PRELOGIN; the TLS ClientHello follows inside a PRELOGIN packet (type 0x12, record type 0x16).
    expect(wire[0]).toBe(0x12);
  });

  it('the certificate is validated unless trustServerCertificate: a self-signed one is refused', async () => {
    await start({ tls: { cert, key } });
    await expect(MssqlSession.connect(config({ encrypt: true, trustServerCertificate: false, serverName: 'rubicon-tds-test' }))).rejects.toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringMatching(/self[- ]signed|certificate/i) });
    expect(server.logins).toEqual([]);
  });

  it('a client that asks for encryption refuses an endpoint that does not support it', async () => {
    await start();
    await expect(MssqlSession.connect(config({ encrypt: true, trustServerCertificate: true }))).rejects.toMatchObject({ code: 'ENGINE_FAILED', message: expect.stringContaining('did not negotiate encryption') });
  });
});
