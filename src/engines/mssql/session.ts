/**
 * One connection to one SQL Server, through the `mssql` package (tedious).
 * The only module of the engine that talks to the network.
 *
 * Contracts:
 * - Connection settings are explicit: `encrypt` and `trustServerCertificate`
 *   have no defaults here; timeouts are documented below and in docs/mssql.md.
 * - A statement is `{ text, params }`: the text never contains a value; every
 *   value is a typed parameter sent through sp_executesql (request.input).
 * - run() never throws for a SQL error: it returns every INFO and ERROR
 *   message the server sent, in order, so a caller can keep CHECKDB's or
 *   RESTORE's own words. It throws ENGINE_FAILED only when the connection
 *   itself fails.
 * - The statement log (onStatement) gets the text and parameter names; a
 *   parameter marked `secret` is logged as `***`, never its value.
 */
import sql from 'mssql';
import { RubiconError } from '../../core/errors.ts';

export interface MssqlConnectionConfig {
  /** Host name or address of the SQL Server. */
  server: string;
  /** TCP port; default 1433. Ignored when instanceName is set (SQL Browser resolves it). */
  port?: number;
  /** Named instance, e.g. `EHR` for `SERVER\EHR`. */
  instanceName?: string;
  /** Database the connection starts in; default `master`. */
  database?: string;
  /** SQL login, or a Windows account with `domain` set (NTLM). */
  user: string;
  /** Never logged; comes from the runbook's secrets source. */
  password: string;
  /** Windows domain for NTLM authentication; absent = SQL authentication. */
  domain?: string;
  /**
   * TLS for the TDS stream. Required, no default: `true` (or `'strict'`, TDS 8)
   * in production; `false` only for the test endpoint on loopback.
   */
  encrypt: boolean | 'strict';
  /**
   * Accept the server's certificate without validating its chain. Required,
   * no default: `false` in production (install a trusted certificate or
   * name it in `serverName`); `true` only for a lab server with a
   * self-signed certificate.
   */
  trustServerCertificate: boolean;
  /** Name to validate the server certificate against, when it differs from `server`. */
  serverName?: string;
  /** Connect (TCP + PRELOGIN + LOGIN7) timeout; default 15 000 ms. */
  connectTimeoutMs?: number;
  /** Timeout of ordinary queries (discovery, msdb, polling); default 60 000 ms. */
  requestTimeoutMs?: number;
  /**
   * Timeout of long operations (BACKUP, RESTORE, DBCC CHECKDB, fingerprints);
   * default 0 = none: a multi-hour restore must not be cut short, the
   * caller's AbortSignal is the limit.
   */
  longRequestTimeoutMs?: number;
}

export type SqlParamType = 'nvarchar' | 'int' | 'bigint' | 'bit' | 'varbinary' | 'datetime2';

export interface SqlParam {
  name: string;
  type: SqlParamType;
  value: string | number | bigint | boolean | Uint8Array | Date | null;
  /** Logged as `***`. Passwords, SAS tokens. */
  secret?: boolean;
}

export interface SqlStatement {
  text: string;
  params: SqlParam[];
  /** BACKUP/RESTORE/DBCC/fingerprint: uses longRequestTimeoutMs. */
  long?: boolean;
}

export interface SqlMessage {
  kind: 'info' | 'error';
  number: number;
  state: number;
  class: number;
  message: string;
}

export type SqlRow = Record<string, unknown>;

export interface SqlOutcome {
  ok: boolean;
  recordsets: SqlRow[][];
  /** INFO and ERROR messages in the order the server sent them. */
  messages: SqlMessage[];
  /** The last error (the one that ended the statement), when !ok. */
  error?: SqlMessage;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
}

/** What the statement log sees: no value of a secret parameter, ever. */
export interface StatementLogEntry {
  server: string;
  text: string;
  params: Record<string, string>;
}

export type StatementLogger = (entry: StatementLogEntry) => void;

/** The mssql/tedious configuration for a connection config; every setting explicit. Pure. */
export function toDriverConfig(c: MssqlConnectionConfig): sql.config {
  const base: sql.config = {
    server: c.server,
    database: c.database ?? 'master',
    user: c.user,
    password: c.password,
    connectionTimeout: c.connectTimeoutMs ?? 15_000,
    requestTimeout: c.requestTimeoutMs ?? 60_000,
    // One connection per session: statements run in order, on one SPID.
    pool: { max: 1, min: 0, idleTimeoutMillis: 30_000 },
    // Check the socket, not a `SELECT 1`, before reusing the connection.
    validateConnection: 'socket',
    options: {
      encrypt: c.encrypt,
      trustServerCertificate: c.trustServerCertificate,
      appName: 'rubicon',
      enableArithAbort: true,
      ...(c.serverName === undefined ? {} : { serverName: c.serverName }),
      ...(c.instanceName === undefined ? {} : { instanceName: c.instanceName }),
    },
  };
  if (c.instanceName === undefined) base.port = c.port ?? 1433;
  if (c.domain !== undefined) base.domain = c.domain;
  return base;
}

/**
 * Parses `mssql://user:password@host:port/database?encrypt=true&trustServerCertificate=false`
 * (the live suite's MSSQL_TEST_URL). `encrypt` and `trustServerCertificate`
 * must be present: there is no silent default.
 */
export function parseMssqlUrl(url: string): MssqlConnectionConfig {
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new RubiconError('ARGUMENTS_INVALID', 'mssql: the connection URL is not a valid URL', { cause: e });
  }
  if (u.protocol !== 'mssql:') {
    throw new RubiconError('ARGUMENTS_INVALID', `mssql: connection URL scheme ${u.protocol} is not mssql:`, {
      hint: 'Write it as mssql://user:password@host:1433/master?encrypt=true&trustServerCertificate=false',
    });
  }
  const flag = (name: string): boolean | 'strict' => {
    const v = u.searchParams.get(name);
    if (v === 'true') return true;
    if (v === 'false') return false;
    if (v === 'strict' && name === 'encrypt') return 'strict';
    throw new RubiconError('ARGUMENTS_INVALID', `mssql: connection URL needs ${name}=true or ${name}=false`, {
      hint: 'Connection security is never defaulted: say what you want.',
    });
  };
  const trust = flag('trustServerCertificate');
  return {
    server: decodeURIComponent(u.hostname),
    port: u.port === '' ? 1433 : Number(u.port),
    database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : 'master',
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    encrypt: flag('encrypt'),
    trustServerCertificate: trust === true,
  };
}

function driverType(t: SqlParamType): sql.ISqlType | (() => sql.ISqlType) {
  switch (t) {
    case 'nvarchar':
      return sql.NVarChar(sql.MAX);
    case 'int':
      return sql.Int;
    case 'bigint':
      return sql.BigInt;
    case 'bit':
      return sql.Bit;
    case 'varbinary':
      return sql.VarBinary(sql.MAX);
    case 'datetime2':
      return sql.DateTime2(7);
  }
}

interface DriverError {
  number?: number;
  state?: number;
  class?: number;
  message?: string;
  precedingErrors?: DriverError[];
  originalError?: { info?: { number?: number; state?: number; class?: number; message?: string } };
}

function toMessage(e: DriverError): SqlMessage {
  const info = e.originalError?.info;
  return {
    kind: 'error',
    number: Number(e.number ?? info?.number ?? 0),
    state: Number(e.state ?? info?.state ?? 0),
    class: Number(e.class ?? info?.class ?? 0),
    message: String(info?.message ?? e.message ?? ''),
  };
}

export class MssqlSession {
  readonly config: MssqlConnectionConfig;
  readonly #pool: sql.ConnectionPool;
  readonly #log: StatementLogger | undefined;

  private constructor(config: MssqlConnectionConfig, pool: sql.ConnectionPool, log?: StatementLogger) {
    this.config = config;
    this.#pool = pool;
    this.#log = log;
  }

  /** Opens the connection. Throws ENGINE_FAILED naming the server (never the password) when it cannot. */
  static async connect(config: MssqlConnectionConfig, log?: StatementLogger): Promise<MssqlSession> {
    const pool = new sql.ConnectionPool(toDriverConfig(config));
    // The pool emits 'error' for a connection that dies idle; the next statement reports it.
    pool.on('error', () => undefined);
    try {
      await pool.connect();
    } catch (e) {
      await pool.close().catch(() => undefined);
      throw new RubiconError(
        'ENGINE_FAILED',
        `mssql: cannot connect to ${describeServer(config)} as ${config.user}: ${(e as Error).message}`,
        {
          cause: e,
          hint: 'Check the server name, port, firewall, the login, and the encrypt/trustServerCertificate settings (docs/mssql.md).',
        },
      );
    }
    return new MssqlSession(config, pool, log);
  }

  /**
   * Runs one statement; SQL errors come back in the outcome, not as exceptions.
   *
   * The request runs in the driver's stream mode, so every INFO, ERROR and
   * result set is seen in the order the server sent it: INFO messages
   * interleaved with errors and rows keep their order, and result sets that
   * come after an error mid-batch are kept. `onMessage` sees each message as
   * it arrives (RESTORE/BACKUP progress, `STATS = 10`). An error of severity
   * 20 or more ends the session on the server's side: ENGINE_FAILED. A DONE
   * token with the error bit but no ERROR token is a failure too (the driver
   * reports it as an unknown error).
   */
  async run(stmt: SqlStatement, signal?: AbortSignal, onMessage?: (m: SqlMessage) => void): Promise<SqlOutcome> {
    signal?.throwIfAborted();
    this.#log?.({
      server: describeServer(this.config),
      text: stmt.text,
      params: Object.fromEntries(stmt.params.map((p) => [p.name, p.secret ? '***' : logValue(p.value)])),
    });
    const timeout = stmt.long ? (this.config.longRequestTimeoutMs ?? 0) : (this.config.requestTimeoutMs ?? 60_000);
    const RequestCtor = sql.Request as unknown as new (pool: sql.ConnectionPool, o: { requestTimeout: number }) => sql.Request;
    const request = new RequestCtor(this.#pool, { requestTimeout: timeout });
    request.stream = true;
    const messages: SqlMessage[] = [];
    const recordsets: SqlRow[][] = [];
    let current: SqlRow[] | undefined;
    let fatal: (DriverError & { code?: string; name?: string }) | undefined;
    const push = (m: SqlMessage): void => {
      messages.push(m);
      onMessage?.(m);
    };
    request.on('info', (i: { number: number; state: number; class: number; message: string }) => {
      push({ kind: 'info', number: i.number, state: i.state, class: i.class, message: i.message });
    });
    request.on('recordset', (columns: unknown) => {
      current = [];
      Object.defineProperty(current, 'columns', { value: columns, enumerable: false });
      recordsets.push(current);
    });
    request.on('row', (row: SqlRow) => {
      current?.push(row);
    });
    request.on('error', (e: DriverError & { code?: string; name?: string }) => {
      const inner = (e.originalError as { code?: string } | undefined)?.code;
      const lost = inner === 'ESOCKET' || inner === 'ECLOSE' || e.code === 'ESOCKET' || /socket hang up|connection lost/i.test(String(e.message ?? ''));
      if (e.name === 'RequestError' && !lost && e.code !== 'ETIMEOUT' && e.code !== 'ECANCEL' && e.code !== 'ECONNCLOSED') {
        // precedingErrors are not set in stream mode: each error comes as its own event, in order.
        push(toMessage(e));
      } else {
        fatal ??= e;
      }
    });
    for (const p of stmt.params) {
      request.input(p.name, driverType(p.type), p.value instanceof Uint8Array ? Buffer.from(p.value) : p.value);
    }
    const onAbort = (): void => request.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    const started = Date.now();
    const startedAt = new Date(started).toISOString();
    try {
      await new Promise<void>((resolve) => {
        request.on('done', () => resolve());
        void request.query(stmt.text);
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    const finished = Date.now();
    const closing = messages.find((m) => m.kind === 'error' && m.class >= 20);
    if (fatal || closing) {
      signal?.throwIfAborted();
      const err = fatal;
      const what = closing ? `the server ended the session with a severity ${closing.class} error (Msg ${closing.number}: ${closing.message})` : (err?.message ?? 'the request failed');
      throw new RubiconError('ENGINE_FAILED', `mssql: ${describeServer(this.config)}: ${what}`, {
        cause: err,
        details: { numbers: messages.filter((m) => m.kind === 'error').map((m) => m.number) },
        hint:
          err?.code === 'ETIMEOUT'
            ? 'The statement timed out: raise requestTimeoutMs/longRequestTimeoutMs in the connection settings.'
            : closing
              ? 'Severity 20 and above are fatal to the connection (SQL Server closes it); look at the SQL Server error log on that server.'
              : 'Check that the SQL Server is reachable and the login still valid.',
      });
    }
    const errors = messages.filter((m) => m.kind === 'error');
    return {
      ok: errors.length === 0,
      recordsets,
      messages,
      ...(errors.length > 0 ? { error: errors[errors.length - 1] } : {}),
      startedAt,
      finishedAt: new Date(finished).toISOString(),
      durationMs: finished - started,
    };
  }

  /**
   * Runs a statement that must succeed and returns its first result set.
   * Throws ENGINE_FAILED with the server's message and `what` (plain words).
   */
  async query(stmt: SqlStatement, what: string, signal?: AbortSignal): Promise<SqlRow[]> {
    const out = await this.run(stmt, signal);
    if (!out.ok) {
      throw new RubiconError('ENGINE_FAILED', `mssql: ${what} failed on ${describeServer(this.config)}: ${formatMessages(out.messages)}`, {
        details: { numbers: out.messages.filter((m) => m.kind === 'error').map((m) => m.number) },
      });
    }
    return out.recordsets[0] ?? [];
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }
}

export function describeServer(c: MssqlConnectionConfig): string {
  return c.instanceName ? `${c.server}\\${c.instanceName}` : `${c.server}:${c.port ?? 1433}`;
}

function logValue(v: SqlParam['value']): string {
  if (v === null) return 'NULL';
  if (v instanceof Uint8Array) return `0x${Buffer.from(v).toString('hex')}`;
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

/** `Msg 3013, Level 16, State 1: RESTORE DATABASE is terminating abnormally.` per error, joined. */
export function formatMessages(messages: SqlMessage[], kinds: SqlMessage['kind'][] = ['error']): string {
  return messages
    .filter((m) => kinds.includes(m.kind))
    .map((m) => `Msg ${m.number}, Level ${m.class}, State ${m.state}: ${m.message}`)
    .join(' | ');
}
