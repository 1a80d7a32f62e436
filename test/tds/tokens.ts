/**
 * MS-TDS 7.4 token encoders for the scripted test endpoint (server.ts).
 *
 * Byte layouts follow [MS-TDS] §2.2.7 and were checked against the token
 * parsers of the tedious driver the tests run (node_modules/tedious/lib/token/*,
 * metadata-parser.js, value-parser.js). Only what Rubicon's queries need is
 * here: nullable int family, bit, float, nvarchar, varbinary, datetime,
 * decimal and uniqueidentifier columns; ERROR/INFO; DONE/DONEINPROC/DONEPROC;
 * RETURNSTATUS; LOGINACK; ENVCHANGE.
 *
 * Contract: pure functions from values to Buffers; a value that does not fit
 * its column type throws (a test-script bug, reported loudly).
 */

export const TOKEN = {
  COLMETADATA: 0x81,
  ROW: 0xd1,
  DONE: 0xfd,
  DONEPROC: 0xfe,
  DONEINPROC: 0xff,
  ENVCHANGE: 0xe3,
  ERROR: 0xaa,
  INFO: 0xab,
  LOGINACK: 0xad,
  RETURNSTATUS: 0x79,
} as const;

export const DONE_STATUS = { FINAL: 0x00, MORE: 0x01, ERROR: 0x02, COUNT: 0x10, ATTN: 0x20 } as const;

/** Column types the endpoint can describe in COLMETADATA. */
export type TdsType =
  | 'tinyint'
  | 'smallint'
  | 'int'
  | 'bigint'
  | 'bit'
  | 'float'
  | 'nvarchar'
  | 'varbinary'
  | 'datetime'
  | 'decimal'
  | 'uniqueidentifier';

export interface TdsColumn {
  name: string;
  type: TdsType;
  /** decimal only; default 38. */
  precision?: number;
  /** decimal only; default 0. */
  scale?: number;
}

/** Latin1_General_CI_AS: LCID 0x0409, flags 0xD0 (ignore case/kana/width), sort id 52. */
export const COLLATION = Buffer.from([0x09, 0x04, 0xd0, 0x00, 0x34]);

const u8 = (n: number): Buffer => Buffer.from([n & 0xff]);
function u16le(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}
function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
function u64le(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
/** B_VARCHAR: 1-byte character count, UCS-2 characters. */
export function bVarchar(s: string): Buffer {
  if (s.length > 255) throw new RangeError(`B_VARCHAR longer than 255 characters: ${s.slice(0, 40)}...`);
  return Buffer.concat([u8(s.length), Buffer.from(s, 'utf16le')]);
}
/** US_VARCHAR: 2-byte character count, UCS-2 characters. */
export function usVarchar(s: string): Buffer {
  if (s.length > 0xffff) throw new RangeError('US_VARCHAR longer than 65535 characters');
  return Buffer.concat([u16le(s.length), Buffer.from(s, 'utf16le')]);
}
/** A token with a 2-byte length prefix after the token byte. */
function lengthPrefixed(token: number, body: Buffer): Buffer {
  return Buffer.concat([u8(token), u16le(body.length), body]);
}

const INT_SIZE: Record<string, number> = { tinyint: 1, smallint: 2, int: 4, bigint: 8 };

function typeInfo(c: TdsColumn): Buffer {
  switch (c.type) {
    case 'tinyint':
    case 'smallint':
    case 'int':
    case 'bigint':
      return Buffer.from([0x26, INT_SIZE[c.type]!]); // INTNTYPE
    case 'bit':
      return Buffer.from([0x68, 1]); // BITNTYPE
    case 'float':
      return Buffer.from([0x6d, 8]); // FLTNTYPE
    case 'nvarchar':
      return Buffer.concat([u8(0xe7), u16le(8000), COLLATION]); // NVARCHARTYPE, max 4000 chars
    case 'varbinary':
      return Buffer.concat([u8(0xa5), u16le(8000)]); // BIGVARBINTYPE
    case 'datetime':
      return Buffer.from([0x6f, 8]); // DATETIMNTYPE
    case 'decimal':
      return Buffer.from([0x6a, 17, c.precision ?? 38, c.scale ?? 0]); // DECIMALNTYPE
    case 'uniqueidentifier':
      return Buffer.from([0x24, 16]); // GUIDTYPE
  }
}

/** COLMETADATA: column count, then per column UserType, Flags (nullable), TYPE_INFO, ColName. */
export function colMetadata(columns: TdsColumn[]): Buffer {
  const parts: Buffer[] = [u8(TOKEN.COLMETADATA), u16le(columns.length)];
  for (const c of columns) {
    parts.push(u32le(0), u16le(0x0001), typeInfo(c), bVarchar(c.name));
  }
  return Buffer.concat(parts);
}

const DAY_MS = 86_400_000;
const EPOCH_1900 = Date.UTC(1900, 0, 1);

function guidBytes(s: string): Buffer {
  const hex = s.replace(/[{}-]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new TypeError(`not a uniqueidentifier: ${s}`);
  const raw = Buffer.from(hex, 'hex');
  // Mixed-endian: first three groups little-endian, the rest as written.
  return Buffer.concat([
    Buffer.from(raw.subarray(0, 4)).reverse(),
    Buffer.from(raw.subarray(4, 6)).reverse(),
    Buffer.from(raw.subarray(6, 8)).reverse(),
    raw.subarray(8),
  ]);
}

function value(c: TdsColumn, v: unknown): Buffer {
  const isNull = v === null || v === undefined;
  switch (c.type) {
    case 'tinyint':
    case 'smallint':
    case 'int':
    case 'bigint': {
      if (isNull) return u8(0);
      const size = INT_SIZE[c.type]!;
      const b = Buffer.alloc(size);
      const n = BigInt(v as number | bigint | string);
      if (size === 1) b.writeUInt8(Number(n));
      else if (size === 2) b.writeInt16LE(Number(n));
      else if (size === 4) b.writeInt32LE(Number(n));
      else b.writeBigInt64LE(n);
      return Buffer.concat([u8(size), b]);
    }
    case 'bit':
      return isNull ? u8(0) : Buffer.from([1, v ? 1 : 0]);
    case 'float': {
      if (isNull) return u8(0);
      const b = Buffer.alloc(8);
      b.writeDoubleLE(Number(v));
      return Buffer.concat([u8(8), b]);
    }
    case 'nvarchar': {
      if (isNull) return u16le(0xffff);
      const s = Buffer.from(String(v), 'utf16le');
      if (s.length > 8000) throw new RangeError(`nvarchar value of column ${c.name} longer than 4000 characters`);
      return Buffer.concat([u16le(s.length), s]);
    }
    case 'varbinary': {
      if (isNull) return u16le(0xffff);
      const b = Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array);
      if (b.length > 8000) throw new RangeError(`varbinary value of column ${c.name} longer than 8000 bytes`);
      return Buffer.concat([u16le(b.length), b]);
    }
    case 'datetime': {
      if (isNull) return u8(0);
      const ms = (v instanceof Date ? v : new Date(String(v))).getTime() - EPOCH_1900;
      const days = Math.floor(ms / DAY_MS);
      const ticks = Math.round((ms - days * DAY_MS) * 0.3); // 1/300 s
      const b = Buffer.alloc(8);
      b.writeInt32LE(days);
      b.writeUInt32LE(ticks, 4);
      return Buffer.concat([u8(8), b]);
    }
    case 'decimal': {
      if (isNull) return u8(0);
      const scale = c.scale ?? 0;
      const [intPart, frac = ''] = String(v).replace(/^-/, '').split('.');
      const digits = BigInt((intPart ?? '0') + frac.padEnd(scale, '0').slice(0, scale));
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(digits & 0xffffffffffffffffn, 0);
      b.writeBigUInt64LE(digits >> 64n, 8);
      return Buffer.concat([u8(17), u8(String(v).startsWith('-') ? 0 : 1), b]);
    }
    case 'uniqueidentifier':
      return isNull ? u8(0) : Buffer.concat([u8(16), guidBytes(String(v))]);
  }
}

/** ROW: one value per column, in column order; a row object's missing key is NULL. */
export function row(columns: TdsColumn[], r: Record<string, unknown>): Buffer {
  return Buffer.concat([u8(TOKEN.ROW), ...columns.map((c) => value(c, r[c.name]))]);
}

/** DONE / DONEINPROC / DONEPROC: status, current command, 8-byte row count. */
export function done(
  token: typeof TOKEN.DONE | typeof TOKEN.DONEINPROC | typeof TOKEN.DONEPROC,
  status: number,
  rowCount?: number,
  curCmd = 0xc1, // SELECT
): Buffer {
  const s = rowCount === undefined ? status : status | DONE_STATUS.COUNT;
  return Buffer.concat([u8(token), u16le(s), u16le(curCmd), u64le(rowCount ?? 0)]);
}

export interface TdsMessage {
  number: number;
  message: string;
  state?: number;
  /** Severity; ERROR tokens are 11..25, INFO tokens 0..10. */
  class?: number;
  serverName?: string;
  procName?: string;
  lineNumber?: number;
}

/** ERROR (0xAA) or INFO (0xAB): number, state, class, message, server, procedure, line. */
export function message(kind: 'error' | 'info', m: TdsMessage): Buffer {
  const body = Buffer.concat([
    u32le(m.number),
    u8(m.state ?? 1),
    u8(m.class ?? (kind === 'error' ? 16 : 0)),
    usVarchar(m.message),
    bVarchar(m.serverName ?? 'RUBICON-TDS'),
    bVarchar(m.procName ?? ''),
    u32le(m.lineNumber ?? 1),
  ]);
  return lengthPrefixed(kind === 'error' ? TOKEN.ERROR : TOKEN.INFO, body);
}

export function returnStatus(status: number): Buffer {
  const b = Buffer.alloc(5);
  b[0] = TOKEN.RETURNSTATUS;
  b.writeInt32LE(status, 1);
  return b;
}

/** LOGINACK: interface SQL_TSQL, TDS 7.4, program name and server version. */
export function loginAck(version: { major: number; minor: number; build: number }): Buffer {
  const body = Buffer.concat([
    u8(1),
    Buffer.from([0x74, 0x00, 0x00, 0x04]), // TDS 7.4, big-endian
    bVarchar('Microsoft SQL Server'),
    u8(version.major),
    u8(version.minor),
    u8((version.build >> 8) & 0xff),
    u8(version.build & 0xff),
  ]);
  return lengthPrefixed(TOKEN.LOGINACK, body);
}

/** ENVCHANGE with B_VARCHAR values: 1 database, 2 language, 4 packet size. */
export function envChange(type: 1 | 2 | 4, newValue: string, oldValue: string): Buffer {
  return lengthPrefixed(TOKEN.ENVCHANGE, Buffer.concat([u8(type), bVarchar(newValue), bVarchar(oldValue)]));
}

/** ENVCHANGE type 7: SQL collation, B_VARBYTE values. */
export function envChangeCollation(): Buffer {
  return lengthPrefixed(TOKEN.ENVCHANGE, Buffer.concat([u8(7), u8(COLLATION.length), COLLATION, u8(0)]));
}

/** PRELOGIN response: VERSION, ENCRYPTION (default NOT_SUP 0x02; ENCRYPT_ON 0x01 for TLS), INSTOPT, THREADID, MARS off. */
export function preloginResponse(version: { major: number; minor: number; build: number }, encryption = 0x02): Buffer {
  const options: [number, Buffer][] = [
    [0x00, Buffer.from([version.major, version.minor, (version.build >> 8) & 0xff, version.build & 0xff, 0, 0])],
    [0x01, Buffer.from([encryption])],
    [0x02, Buffer.from([0x00])],
    [0x03, Buffer.alloc(0)],
    [0x04, Buffer.from([0x00])],
  ];
  const headerLength = options.length * 5 + 1;
  const header = Buffer.alloc(headerLength);
  const data: Buffer[] = [];
  let offset = headerLength;
  options.forEach(([token, d], i) => {
    header.writeUInt8(token, i * 5);
    header.writeUInt16BE(offset, i * 5 + 1);
    header.writeUInt16BE(d.length, i * 5 + 3);
    data.push(d);
    offset += d.length;
  });
  header.writeUInt8(0xff, headerLength - 1);
  return Buffer.concat([header, ...data]);
}
