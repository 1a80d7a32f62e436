/**
 * A scripted TDS endpoint: the part of MS-TDS 7.4 the tedious driver (and so
 * the `mssql` package) needs, on a loopback net.Server, answering from a
 * script instead of a database.
 *
 *   PRELOGIN  → PRELOGIN response: ENCRYPTION = NOT_SUP, or ENCRYPT_ON when the
 *               endpoint has a certificate (`tls`) and the client asks for
 *               encryption; then the TLS handshake runs inside PRELOGIN
 *               packets (MS-TDS 2.2.6.5, as tedious' message-io does it) and
 *               everything after it, LOGIN7 included, is TLS on the socket
 *   LOGIN7    → LOGINACK + ENVCHANGE (database, collation, packet size) + DONE
 *   SQL_BATCH → text decoded, answered by the script
 *   RPC       → sp_executesql decoded (statement, declarations, every parameter
 *               value), any other procedure by name; answered by the script
 *   ATTENTION → DONE with the ATTN bit
 *
 * Every request is recorded (`requests`, `statements()`) so tests assert the
 * exact SQL and the exact parameter values the engine sent. A request no rule
 * matches is answered with error 50000 naming it, so an unexpected statement
 * fails the test that caused it instead of passing silently.
 *
 * A reply is either the simple shape (infos, result sets, errors) or an
 * ordered list of `parts` as SQL Server sends them: INFO interleaved with
 * rows and errors, an error mid-batch followed by more results (each
 * statement ends with its own DONE, with the ERROR bit after an error), a
 * DONE with the ERROR bit and no ERROR token, `flush` points where what came
 * before is sent at once and the endpoint waits for the test (RESTORE
 * progress arriving over time), and `close` (a severity 20+ error: SQL
 * Server closes the connection).
 *
 * Not implemented (not needed by Rubicon): TDS 8 (strict), MARS,
 * NTLM/federated auth, bulk load, transaction manager requests, PLP column
 * values in results.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import {
  colMetadata,
  done,
  DONE_STATUS,
  envChange,
  envChangeCollation,
  loginAck,
  message,
  preloginResponse,
  returnStatus,
  row,
  TOKEN,
  type TdsColumn,
  type TdsMessage,
} from './tokens.ts';

export type { TdsColumn, TdsMessage, TdsType } from './tokens.ts';

const PACKET = { SQL_BATCH: 0x01, RPC: 0x03, REPLY: 0x04, ATTENTION: 0x06, LOGIN7: 0x10, PRELOGIN: 0x12 } as const;
const HEADER = 8;
const EOM = 0x01;

export interface TdsResultSet {
  columns: TdsColumn[];
  /** Row objects keyed by column name; a missing key is NULL. */
  rows: Record<string, unknown>[];
}

/** One piece of an ordered reply. */
export type TdsPart =
  | { info: TdsMessage }
  | { error: TdsMessage }
  | { resultSet: TdsResultSet }
  /** Ends one statement of the batch: DONE (DONEINPROC inside an RPC) with MORE, and ERROR when `error`. */
  | { done: { error?: boolean; rowCount?: number } }
  /** Sends everything before it now (packets without EOM), then waits for the promise before going on. */
  | { flush: Promise<unknown> }
  /** Sends everything before it, then closes the connection (what SQL Server does after a severity 20+ error). */
  | { close: true };

/** What the endpoint answers to one request. */
export interface TdsReply {
  /** An ordered reply; when given, infos/resultSets/errors are ignored. The final DONE(PROC) follows, with ERROR when `finalError`. */
  parts?: TdsPart[];
  /** The final DONE carries the ERROR bit (default: when any error part was sent and no `done` came after it). */
  finalError?: boolean;
  /** INFO tokens, sent first (PRINT output, RESTORE progress, "DBCC execution completed"). */
  infos?: TdsMessage[];
  resultSets?: TdsResultSet[];
  /** ERROR tokens, sent after the result sets; the final DONE then carries the ERROR bit. */
  errors?: TdsMessage[];
  /** Row count reported for a statement without a result set (INSERT/UPDATE/DELETE). */
  rowsAffected?: number;
}

export interface TdsRequest {
  kind: 'batch' | 'rpc';
  /** The SQL text: the batch, or sp_executesql's @statement; for another procedure its name. */
  sql: string;
  /** sp_executesql's @params declaration, e.g. `@db nvarchar(4)`. */
  declarations?: string;
  /** Parameter values by name without '@', decoded from their TDS types. */
  params: Record<string, unknown>;
  /** The procedure an RPC called (`sp_executesql` or its name). */
  procedure?: string;
  /** Driver housekeeping (tedious' initial SET batch, the pool's `SELECT 1;`). */
  internal: boolean;
  /** The database named in LOGIN7 for the connection that sent it. */
  database: string;
  /** The request arrived over TLS. */
  encrypted: boolean;
}

export type TdsMatcher = RegExp | string | ((req: TdsRequest) => boolean);
export type TdsResponder = TdsReply | ((req: TdsRequest, call: number) => TdsReply | Promise<TdsReply>);

interface Rule {
  match: TdsMatcher;
  reply: TdsResponder;
  remaining: number;
  calls: number;
}

export interface TdsServerOptions {
  /** Version reported in PRELOGIN and LOGINACK; default 16.0.4135 (SQL Server 2022). */
  version?: { major: number; minor: number; build: number };
  /** A certificate and key (PEM): the endpoint then negotiates TLS when the client asks for encryption. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Logins refused with Msg 18456, by user name. */
  refuseUsers?: string[];
}

function matches(m: TdsMatcher, req: TdsRequest): boolean {
  if (typeof m === 'string') return req.sql.includes(m);
  if (m instanceof RegExp) return m.test(req.sql);
  return m(req);
}

/** 0001-01-01T00:00:00Z (Date.UTC maps years 0..99 to 19xx, so set the year explicitly). */
const YEAR_ONE = new Date(0).setUTCFullYear(1, 0, 1);

/** Reads the TYPE_INFO and value of one RPC parameter. Returns the value and the new offset. */
function readParamValue(buf: Buffer, offset: number): { value: unknown; offset: number } {
  const type = buf.readUInt8(offset);
  offset += 1;
  switch (type) {
    case 0x26: // INTN
    case 0x68: // BITN
    case 0x6d: // FLTN
    case 0x6f: // DATETIMN
    case 0x6e: // MONEYN
    case 0x24: {
      // GUID
      offset += 1; // max length
      const len = buf.readUInt8(offset);
      offset += 1;
      const data = buf.subarray(offset, offset + len);
      offset += len;
      if (len === 0) return { value: null, offset };
      if (type === 0x26) {
        const v =
          len === 1 ? data.readUInt8(0) : len === 2 ? data.readInt16LE(0) : len === 4 ? data.readInt32LE(0) : data.readBigInt64LE(0);
        return { value: v, offset };
      }
      if (type === 0x68) return { value: data.readUInt8(0) === 1, offset };
      if (type === 0x6d) return { value: len === 4 ? data.readFloatLE(0) : data.readDoubleLE(0), offset };
      if (type === 0x6f) {
        const days = data.readInt32LE(0);
        const ticks = data.readUInt32LE(4);
        return { value: new Date(Date.UTC(1900, 0, 1) + days * 86_400_000 + Math.round(ticks / 0.3)), offset };
      }
      return { value: data.toString('hex'), offset };
    }
    case 0x2a: {
      // DATETIME2N: scale, then length, time (10^-scale s units, 3..5 bytes LE), 3-byte days since 0001-01-01
      const scale = buf.readUInt8(offset);
      offset += 1;
      const len = buf.readUInt8(offset);
      offset += 1;
      if (len === 0) return { value: null, offset };
      const timeLen = len - 3;
      let units = 0n;
      for (let i = timeLen - 1; i >= 0; i--) units = (units << 8n) | BigInt(buf.readUInt8(offset + i));
      const days = buf.readUIntLE(offset + timeLen, 3);
      offset += len;
      const ms = Number((units * 1000n) / 10n ** BigInt(scale));
      return { value: new Date(YEAR_ONE + days * 86_400_000 + ms), offset };
    }
    case 0x6a: // DECIMALN
    case 0x6c: {
      // NUMERICN
      offset += 1; // max length
      offset += 1; // precision
      const scale = buf.readUInt8(offset);
      offset += 1;
      const len = buf.readUInt8(offset);
      offset += 1;
      if (len === 0) return { value: null, offset };
      const sign = buf.readUInt8(offset) === 1 ? '' : '-';
      let n = 0n;
      for (let i = len - 2; i >= 0; i--) n = (n << 8n) | BigInt(buf.readUInt8(offset + 1 + i));
      offset += len;
      const s = n.toString().padStart(scale + 1, '0');
      return { value: sign + (scale ? `${s.slice(0, -scale)}.${s.slice(-scale)}` : s), offset };
    }
    case 0xe7: // NVARCHAR
    case 0xef: // NCHAR
    case 0xa7: // BIGVARCHAR
    case 0xaf: // BIGCHAR
    case 0xa5: // BIGVARBINARY
    case 0xad: {
      // BIGBINARY
      const maxLen = buf.readUInt16LE(offset);
      offset += 2;
      if (type !== 0xa5 && type !== 0xad) offset += 5; // collation
      let data: Buffer | null;
      if (maxLen === 0xffff) {
        // PLP: 8-byte total length (all ones = NULL), then chunks until a zero-length chunk.
        const total = buf.readBigUInt64LE(offset);
        offset += 8;
        if (total === 0xffffffffffffffffn) {
          data = null;
        } else {
          const chunks: Buffer[] = [];
          for (;;) {
            const chunkLen = buf.readUInt32LE(offset);
            offset += 4;
            if (chunkLen === 0) break;
            chunks.push(buf.subarray(offset, offset + chunkLen));
            offset += chunkLen;
          }
          data = Buffer.concat(chunks);
        }
      } else {
        const len = buf.readUInt16LE(offset);
        offset += 2;
        data = len === 0xffff ? null : buf.subarray(offset, offset + len);
        if (data) offset += len;
      }
      if (data === null) return { value: null, offset };
      if (type === 0xe7 || type === 0xef) return { value: data.toString('utf16le'), offset };
      if (type === 0xa7 || type === 0xaf) return { value: data.toString('latin1'), offset };
      return { value: Buffer.from(data), offset };
    }
    default:
      throw new Error(`scripted TDS endpoint: RPC parameter type 0x${type.toString(16)} not implemented`);
  }
}

function skipAllHeaders(payload: Buffer): number {
  return payload.readUInt32LE(0);
}

function decodeRpc(payload: Buffer): { procedure: string; params: { name: string; value: unknown }[] } {
  let offset = skipAllHeaders(payload);
  const nameLen = payload.readUInt16LE(offset);
  offset += 2;
  let procedure: string;
  if (nameLen === 0xffff) {
    const id = payload.readUInt16LE(offset);
    offset += 2;
    procedure = id === 10 ? 'sp_executesql' : `proc#${id}`;
  } else {
    procedure = payload.subarray(offset, offset + nameLen * 2).toString('utf16le');
    offset += nameLen * 2;
  }
  offset += 2; // option flags
  const params: { name: string; value: unknown }[] = [];
  while (offset < payload.length) {
    const len = payload.readUInt8(offset);
    offset += 1;
    const name = payload.subarray(offset, offset + len * 2).toString('utf16le').replace(/^@/, '');
    offset += len * 2;
    offset += 1; // status flags
    const r = readParamValue(payload, offset);
    offset = r.offset;
    params.push({ name, value: r.value });
  }
  return { procedure, params };
}

/** Reads a UCS-2 field of LOGIN7 from its (offset, length) pair at `at`. */
function login7Field(payload: Buffer, at: number): string {
  const off = payload.readUInt16LE(at);
  const len = payload.readUInt16LE(at + 2);
  return payload.subarray(off, off + len * 2).toString('utf16le');
}

/** tedious' initial SET batch (it ends with `set textsize` and more) and the pool's validation query. */
const INTERNAL = [/^set ansi_nulls [\s\S]*\bset textsize\b/, /^SELECT 1;$/];

export class TdsServer {
  readonly requests: TdsRequest[] = [];
  readonly #rules: Rule[] = [];
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #version: { major: number; minor: number; build: number };
  readonly #refuse: Set<string>;
  readonly #tls: TdsServerOptions['tls'];
  /** Every byte clients sent, as it arrived on the socket (to show what crossed the wire in clear). */
  readonly wire: Buffer[] = [];
  /** Every successful login: who, into which database, and whether over TLS. */
  readonly logins: { user: string; database: string; encrypted: boolean }[] = [];
  #port = 0;

  constructor(options: TdsServerOptions = {}) {
    this.#version = options.version ?? { major: 16, minor: 0, build: 4135 };
    this.#refuse = new Set(options.refuseUsers ?? []);
    this.#tls = options.tls;
    this.#server = net.createServer((socket) => this.#accept(socket));
  }

  get port(): number {
    return this.#port;
  }

  /** Listens on 127.0.0.1 on a free port. */
  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = this.#server.address();
    if (addr === null || typeof addr === 'string') throw new Error('scripted TDS endpoint: no port');
    this.#port = addr.port;
    return this.#port;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /**
   * Adds a rule. Rules are tried in the order they were added; the first
   * one that matches and has calls left answers. `times` limits how often it
   * answers (default: always), which scripts sequences such as a job that is
   * running twice and then stops.
   */
  on(match: TdsMatcher, reply: TdsResponder, options: { times?: number } = {}): this {
    this.#rules.push({ match, reply, remaining: options.times ?? Number.POSITIVE_INFINITY, calls: 0 });
    return this;
  }

  /** The SQL text of every non-housekeeping request, in order. */
  statements(): string[] {
    return this.requests.filter((r) => !r.internal).map((r) => r.sql);
  }

  /** Non-housekeeping requests whose SQL matches. */
  find(match: TdsMatcher): TdsRequest[] {
    return this.requests.filter((r) => !r.internal && matches(match, r));
  }

  /** Splits a byte stream into TDS messages (packets joined until EOM). */
  #assembler(onMessage: (type: number, payload: Buffer) => void): (chunk: Buffer) => void {
    let pending = Buffer.alloc(0);
    let parts: Buffer[] = [];
    return (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= HEADER) {
        const length = pending.readUInt16BE(2);
        if (pending.length < length) break;
        const type = pending.readUInt8(0);
        const status = pending.readUInt8(1);
        parts.push(pending.subarray(HEADER, length));
        pending = pending.subarray(length);
        if ((status & EOM) === 0) continue;
        const payload = Buffer.concat(parts);
        parts = [];
        onMessage(type, payload);
      }
    };
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const conn: Conn = { write: (b) => socket.write(b), close: () => socket.end(), database: 'master', encrypted: false };
    let queue = Promise.resolve();
    const onMessage = (type: number, payload: Buffer): void => {
      queue = queue
        .then(async () => {
          if (type === PACKET.LOGIN7) conn.database = login7Field(payload, 68) || 'master';
          if (type === PACKET.PRELOGIN && !conn.encrypted && this.#tls && clientWantsEncryption(payload)) {
            this.#send(conn, preloginResponse(this.#version, ENCRYPT_ON));
            startTls();
            return;
          }
          await this.#handle(conn, type, payload);
        })
        .catch((e: unknown) => {
          // A decoding bug in this endpoint: answer with an error the test will see.
          this.#send(conn, Buffer.concat([message('error', { number: 50001, message: String(e) }), done(TOKEN.DONE, DONE_STATUS.ERROR)]));
        });
    };
    const plain = this.#assembler(onMessage);
    let mode: 'plain' | 'handshake' | 'tls' = 'plain';
    let onRaw: (chunk: Buffer) => void = plain;
    socket.on('data', (chunk: Buffer) => {
      this.wire.push(chunk);
      onRaw(chunk);
    });

    /**
     * TDS-wrapped TLS (MS-TDS 2.2.6.5): the client sends each handshake
     * flight inside a PRELOGIN message and reads exactly one message back,
     * which carries the server's flight; once the handshake is done, TLS
     * records flow on the socket itself and carry TDS packets.
     */
    const startTls = (): void => {
      mode = 'handshake';
      const raw: Conn = { ...conn, write: (b) => socket.write(b) };
      let out: Buffer[] = [];
      let flushing = false;
      let awaitingResponse = false;
      let secured = false;
      const transport = new Duplex({
        read() {},
        write: (chunk: Buffer, _enc, cb) => {
          if (mode === 'tls') {
            socket.write(chunk);
            return cb();
          }
          out.push(chunk);
          if (!flushing) {
            flushing = true;
            // One flight is written in one go; send it as one PRELOGIN message once this turn of writes is over.
            setImmediate(() => {
              flushing = false;
              // Handshake flights go on the socket itself, wrapped in a PRELOGIN message (conn.write already points into TLS).
              this.#send(raw, Buffer.concat(out), PACKET.PRELOGIN);
              out = [];
              awaitingResponse = false;
              if (secured) mode = 'tls';
            });
          }
          cb();
        },
      });
      const handshake = this.#assembler((type, payload) => {
        if (type !== PACKET.PRELOGIN) throw new Error(`scripted TDS endpoint: packet type ${type} during the TLS handshake`);
        awaitingResponse = true;
        transport.push(payload);
      });
      onRaw = (chunk) => (mode === 'tls' ? transport.push(chunk) : handshake(chunk));
      const secure = new tls.TLSSocket(transport as unknown as net.Socket, { isServer: true, secureContext: tls.createSecureContext({ cert: this.#tls!.cert, key: this.#tls!.key }) });
      secure.on('secure', () => {
        secured = true;
        if (!awaitingResponse && !flushing) mode = 'tls';
      });
      secure.on('error', () => socket.destroy());
      conn.encrypted = true;
      conn.write = (b) => secure.write(b);
      conn.close = () => {
        secure.end();
        socket.end();
      };
      secure.on('data', this.#assembler(onMessage));
      socket.on('close', () => secure.destroy());
    };
  }

  async #handle(conn: Conn, type: number, payload: Buffer): Promise<void> {
    const database = conn.database;
    switch (type) {
      case PACKET.PRELOGIN:
        this.#send(conn, preloginResponse(this.#version));
        return;
      case PACKET.LOGIN7: {
        const user = login7Field(payload, 40);
        if (this.#refuse.has(user)) {
          this.#send(
            conn,
            Buffer.concat([
              message('error', { number: 18456, class: 14, message: `Login failed for user '${user}'.` }),
              done(TOKEN.DONE, DONE_STATUS.ERROR),
            ]),
          );
          return;
        }
        this.logins.push({ user, database, encrypted: conn.encrypted });
        this.#send(
          conn,
          Buffer.concat([
            envChange(1, database, 'master'),
            envChangeCollation(),
            loginAck(this.#version),
            envChange(4, '4096', '4096'),
            done(TOKEN.DONE, DONE_STATUS.FINAL, undefined, 0),
          ]),
        );
        return;
      }
      case PACKET.ATTENTION:
        this.#send(conn, done(TOKEN.DONE, DONE_STATUS.ATTN));
        return;
      case PACKET.SQL_BATCH: {
        const sql = payload.subarray(skipAllHeaders(payload)).toString('utf16le');
        const req: TdsRequest = { kind: 'batch', sql, params: {}, internal: INTERNAL.some((r) => r.test(sql)), database, encrypted: conn.encrypted };
        this.requests.push(req);
        await this.#answer(conn, req, await this.#reply(req));
        return;
      }
      case PACKET.RPC: {
        const { procedure, params } = decodeRpc(payload);
        let req: TdsRequest;
        if (procedure === 'sp_executesql') {
          const [statement, declarations, ...rest] = params;
          const sql = String(statement?.value ?? '');
          req = {
            kind: 'rpc',
            procedure,
            sql,
            declarations: declarations === undefined ? undefined : String(declarations.value),
            params: Object.fromEntries(rest.map((p) => [p.name, p.value])),
            internal: INTERNAL.some((r) => r.test(sql)),
            database,
            encrypted: conn.encrypted,
          };
        } else {
          req = {
            kind: 'rpc',
            procedure,
            sql: procedure,
            params: Object.fromEntries(params.map((p) => [p.name, p.value])),
            internal: false,
            database,
            encrypted: conn.encrypted,
          };
        }
        this.requests.push(req);
        await this.#answer(conn, req, await this.#reply(req));
        return;
      }
      default:
        this.#send(conn, Buffer.concat([message('error', { number: 50002, message: `packet type ${type} not implemented` }), done(TOKEN.DONE, DONE_STATUS.ERROR)]));
    }
  }

  async #reply(req: TdsRequest): Promise<TdsReply> {
    if (req.internal) return { resultSets: /^SELECT 1/.test(req.sql) ? [{ columns: [{ name: '', type: 'int' }], rows: [{ '': 1 }] }] : [] };
    for (const rule of this.#rules) {
      if (rule.remaining <= 0 || !matches(rule.match, req)) continue;
      rule.remaining -= 1;
      rule.calls += 1;
      return typeof rule.reply === 'function' ? await rule.reply(req, rule.calls) : rule.reply;
    }
    return {
      errors: [{ number: 50000, class: 16, message: `scripted TDS endpoint: no rule for ${req.kind}: ${req.sql.slice(0, 300)}` }],
    };
  }

  /** Sends a reply: the simple shape as one message, `parts` in order with flushes and a possible close. */
  async #answer(conn: Conn, req: TdsRequest, reply: TdsReply): Promise<void> {
    if (!reply.parts) {
      this.#send(conn, this.#tokens(req, reply));
      return;
    }
    const inProc = req.kind === 'rpc';
    let buffered: Buffer[] = [];
    let errorSinceDone = false;
    let packetId = 1;
    const flush = (last: boolean): void => {
      packetId = this.#send(conn, Buffer.concat(buffered), PACKET.REPLY, last, packetId);
      buffered = [];
    };
    for (const part of reply.parts) {
      if ('info' in part) buffered.push(message('info', part.info));
      else if ('error' in part) {
        buffered.push(message('error', part.error));
        errorSinceDone = true;
      } else if ('resultSet' in part) {
        buffered.push(colMetadata(part.resultSet.columns));
        for (const r of part.resultSet.rows) buffered.push(row(part.resultSet.columns, r));
        buffered.push(done(inProc ? TOKEN.DONEINPROC : TOKEN.DONE, DONE_STATUS.MORE, part.resultSet.rows.length));
      } else if ('done' in part) {
        buffered.push(done(inProc ? TOKEN.DONEINPROC : TOKEN.DONE, DONE_STATUS.MORE | (part.done.error ? DONE_STATUS.ERROR : 0), part.done.rowCount));
        errorSinceDone = false;
      } else if ('flush' in part) {
        flush(false);
        await part.flush;
      } else if ('close' in part) {
        // As SQL Server does after a severity 20+ error: the error and a final DONE(ERROR), then the connection is closed.
        buffered.push(done(inProc ? TOKEN.DONEPROC : TOKEN.DONE, DONE_STATUS.ERROR, undefined, inProc ? 0xe0 : 0xc1));
        flush(true);
        conn.close();
        return;
      }
    }
    const error = reply.finalError ?? errorSinceDone;
    const status = error ? DONE_STATUS.ERROR : DONE_STATUS.FINAL;
    if (inProc) {
      buffered.push(returnStatus(error ? 1 : 0));
      buffered.push(done(TOKEN.DONEPROC, status, undefined, 0xe0));
    } else {
      buffered.push(done(TOKEN.DONE, status, undefined, 0xc1));
    }
    flush(true);
  }

  #tokens(req: TdsRequest, reply: TdsReply): Buffer {
    const parts: Buffer[] = [];
    const inProc = req.kind === 'rpc';
    for (const info of reply.infos ?? []) parts.push(message('info', info));
    for (const rs of reply.resultSets ?? []) {
      parts.push(colMetadata(rs.columns));
      for (const r of rs.rows) parts.push(row(rs.columns, r));
      parts.push(done(inProc ? TOKEN.DONEINPROC : TOKEN.DONE, DONE_STATUS.MORE, rs.rows.length));
    }
    const errors = reply.errors ?? [];
    for (const e of errors) parts.push(message('error', e));
    const status = errors.length > 0 ? DONE_STATUS.ERROR : DONE_STATUS.FINAL;
    if (inProc) {
      if (reply.rowsAffected !== undefined) parts.push(done(TOKEN.DONEINPROC, DONE_STATUS.MORE, reply.rowsAffected, 0xc3));
      parts.push(returnStatus(errors.length > 0 ? 1 : 0));
      parts.push(done(TOKEN.DONEPROC, status, undefined, 0xe0));
    } else {
      parts.push(done(TOKEN.DONE, status, reply.rowsAffected, reply.rowsAffected === undefined ? 0xc1 : 0xc3));
    }
    return Buffer.concat(parts);
  }

  /**
   * Frames data as packets of at most 4096 bytes of `type` (TABULAR_RESULT
   * by default); the last one has EOM when `last`. Returns the next packet id.
   */
  #send(conn: Conn, data: Buffer, type: number = PACKET.REPLY, last = true, firstId = 1): number {
    const max = 4096 - HEADER;
    let packetId = firstId;
    for (let off = 0; off < data.length || off === 0; off += max) {
      const chunk = data.subarray(off, off + max);
      const end = off + max >= data.length;
      const header = Buffer.alloc(HEADER);
      header.writeUInt8(type, 0);
      header.writeUInt8(end && last ? EOM : 0, 1);
      header.writeUInt16BE(chunk.length + HEADER, 2);
      header.writeUInt16BE(0x0033, 4);
      header.writeUInt8(packetId++ % 256, 6);
      conn.write(Buffer.concat([header, chunk]));
      if (end) break;
    }
    return packetId;
  }
}

/** One client connection: where replies go (the socket, or the TLS stream on it). */
interface Conn {
  write(b: Buffer): void;
  close(): void;
  database: string;
  encrypted: boolean;
}

/** ENCRYPTION option of PRELOGIN: 0x00 OFF, 0x01 ON, 0x02 NOT_SUP, 0x03 REQ. */
const ENCRYPT_ON = 0x01;

/** Whether a client's PRELOGIN asks for encryption (ENCRYPTION option ON or REQ). */
function clientWantsEncryption(payload: Buffer): boolean {
  for (let i = 0; i + 5 <= payload.length && payload[i] !== 0xff; i += 5) {
    if (payload[i] === 0x01) {
      const offset = payload.readUInt16BE(i + 1);
      const v = payload[offset];
      return v === 0x01 || v === 0x03;
    }
  }
  return false;
}
