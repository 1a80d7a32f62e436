/**
 * Pure SQL text helpers for the SQLite dump: identifier quoting, literals
 * that round-trip exactly, and a statement splitter that knows where one
 * statement ends (a port of the state machine in SQLite's complete.c, so
 * CREATE TRIGGER bodies with inner semicolons stay whole).
 */

/** Quotes an identifier: "name" with embedded double quotes doubled. */
export function quoteIdent(name: string): string {
  return '"' + name.replaceAll('"', '""') + '"';
}

/**
 * A SQL literal that SQLite reads back as the same value with the same
 * storage class:
 * - null → NULL; bigint → decimal integer;
 * - number (a REAL, the reader uses readBigInts) → shortest round-trip
 *   decimal, always with a '.' or exponent so it stays REAL; ±Infinity as
 *   ±9e999 (SQLite's own spelling); NaN cannot be stored and becomes NULL;
 * - string → '...' with quotes doubled; NUL characters (which would end the
 *   statement) spliced in as char(0);
 * - bytes → X'hex'.
 */
export function sqlLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'bigint') return value.toString(10);
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NULL';
    if (value === Infinity) return '9e999';
    if (value === -Infinity) return '-9e999';
    if (Object.is(value, -0)) return '-0.0';
    const s = String(value);
    return /[.eE]/.test(s) ? s : s + '.0';
  }
  if (typeof value === 'string') {
    const parts = value.split('\u0000').map((p) => "'" + p.replaceAll("'", "''") + "'");
    return parts.length === 1 ? parts[0]! : '(' + parts.join("||char(0)||") + ')';
  }
  if (value instanceof Uint8Array) {
    return "X'" + Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex').toUpperCase() + "'";
  }
  throw new TypeError(`sqlLiteral: SQLite returned an unexpected value type ${typeof value}`);
}

// Tokens and transitions of sqlite3_complete() (src/complete.c).
const SEMI = 0;
const WS = 1;
const OTHER = 2;
const EXPLAIN = 3;
const CREATE = 4;
const TEMP = 5;
const TRIGGER = 6;
const END = 7;
const START_STATE = 1;
const TRANS: readonly (readonly number[])[] = [
  /* 0 INVALID */ [1, 0, 2, 3, 4, 2, 2, 2],
  /* 1 START   */ [1, 1, 2, 3, 4, 2, 2, 2],
  /* 2 NORMAL  */ [1, 2, 2, 2, 2, 2, 2, 2],
  /* 3 EXPLAIN */ [1, 3, 3, 2, 4, 2, 2, 2],
  /* 4 CREATE  */ [1, 4, 2, 2, 2, 4, 5, 2],
  /* 5 TRIGGER */ [6, 5, 5, 5, 5, 5, 5, 5],
  /* 6 SEMI    */ [6, 6, 5, 5, 5, 5, 5, 7],
  /* 7 END     */ [1, 7, 5, 5, 5, 5, 5, 5],
];

const isIdChar = (c: string): boolean => /[A-Za-z0-9_$]/.test(c) || c.charCodeAt(0) > 0x7f;
const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f';

function keyword(word: string): number {
  switch (word.toLowerCase()) {
    case 'create':
      return CREATE;
    case 'temp':
    case 'temporary':
      return TEMP;
    case 'trigger':
      return TRIGGER;
    case 'end':
      return END;
    case 'explain':
      return EXPLAIN;
    default:
      return OTHER;
  }
}

/**
 * Splits SQL text into complete statements. `final` = no more text follows.
 * Returns the complete statements (each ending with its ';') and the
 * unfinished rest, which the caller prepends to the next chunk. With
 * `final`, a non-empty rest means the text ended inside a statement
 * (trailing whitespace and comments alone give an empty rest).
 * Pure; cost is linear in the text scanned.
 */
export function splitStatements(text: string, final: boolean): { statements: string[]; rest: string } {
  const statements: string[] = [];
  let state = 0;
  let stmtStart = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    let token: number;
    let next: number;
    if (c === ';') {
      token = SEMI;
      next = i + 1;
    } else if (isSpace(c)) {
      token = WS;
      next = i + 1;
    } else if (c === '/' && text[i + 1] === '*') {
      const close = text.indexOf('*/', i + 2);
      if (close < 0) {
        if (!final) break;
        next = n;
      } else next = close + 2;
      token = WS;
    } else if (c === '-' && text[i + 1] === '-') {
      const nl = text.indexOf('\n', i + 2);
      if (nl < 0) {
        if (!final) break;
        next = n;
      } else next = nl + 1;
      token = WS;
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      let closed = false;
      while (j < n) {
        if (text[j] === close) {
          // A doubled quote inside a quoted run is an escaped quote ([...] has no escape).
          if (close !== ']' && text[j + 1] === close) {
            j += 2;
            continue;
          }
          closed = true;
          j += 1;
          break;
        }
        j += 1;
      }
      if (!closed && !final) break;
      // A doubled quote split across chunks cannot be told from a closing one: wait for more text.
      if (closed && !final && j === n && close !== ']') break;
      token = OTHER;
      next = j;
    } else if (isIdChar(c)) {
      let j = i + 1;
      while (j < n && isIdChar(text[j]!)) j += 1;
      if (j === n && !final) break; // the word may continue in the next chunk
      token = keyword(text.slice(i, j));
      next = j;
    } else {
      token = OTHER;
      next = i + 1;
    }
    state = TRANS[state]![token]!;
    i = next;
    if (token === SEMI && state === START_STATE) {
      statements.push(text.slice(stmtStart, i));
      stmtStart = i;
      state = 0;
    }
  }
  // At the end of the text, whitespace and comments after the last statement are not a statement.
  if (final && i >= n && state === 0) return { statements, rest: '' };
  return { statements, rest: text.slice(stmtStart) };
}
