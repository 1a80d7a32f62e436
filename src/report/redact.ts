/**
 * Defensive redaction for free text that ends up in a report.
 *
 * Contract: the inputs of a report (journal facts) should already be free of
 * secrets and patient data; this is a second line of defence against an
 * engine message or a recorded command that slipped one through. It is pure,
 * idempotent (`redact(redact(s)) === redact(s)`), and it only ever replaces
 * the secret value, keeping the key so the reader still sees what was there.
 *
 * It cannot recognise every secret; it recognises the common shapes:
 * `password=...`, `pwd=...`, `secret: ...`, connection-string passwords,
 * SAS signatures (`sig=...`), `AccountKey=...`, bearer tokens, the password
 * in `scheme://user:password@host`, and US social security numbers.
 */

export const REDACTED = '[redacted]';

// key=value and `key: value` (a space after the colon, so ids like `secret:tde-cert` survive),
// as in connection strings, command lines, URLs, INI and YAML files.
// A value already redacted is matched first, as a whole, so a second pass never
// swallows what follows it into a "new" value (`password=""(` → `password=[redacted](`,
// which must stay as it is: idempotence).
const KEY_VALUE =
  /\b(password|passwd|pwd|secret|client[_-]?secret|token|access[_-]?token|api[_-]?key|apikey|account[_-]?key|shared[_-]?access[_-]?key|sharedaccesssignature|sig|sas)(\s*=\s*|\s*:\s+)(\[redacted\]|"[^"]*"|'[^']*'|[^\s;&,'"]+)/gi;
// -Password foo / --password foo / -p:foo style command-line flags.
const FLAG_VALUE = /(\s--?(?:password|passwd|pwd|secret|token|api-key|account-key)\s+)(\[redacted\]|"[^"]*"|'[^']*'|[^\s;&]+)/gi;
// scheme://user:password@host
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)([^\s@/]+)@/gi;
const BEARER = /\b(bearer\s+)([a-z0-9._~+/-]+=*)/gi;
const SSN = /\b\d{3}-\d{2}-\d{4}\b/g;

function isRedacted(value: string): boolean {
  return value === REDACTED || value === `"${REDACTED}"` || value === `'${REDACTED}'`;
}

/**
 * Returns `text` with anything that looks like a secret or an SSN replaced
 * by `[redacted]`. One pass is meant to be idempotent; the passes are
 * repeated until nothing changes anyway (each pass only ever replaces a
 * value that is not `[redacted]` by `[redacted]`, so this ends quickly), so
 * that a combination of rules nobody thought of cannot make it otherwise.
 */
export function redact(text: string): string {
  let out = text;
  for (let i = 0; i < 8; i++) {
    const next = redactOnce(out);
    if (next === out) return out;
    out = next;
  }
  return out;
}

function redactOnce(text: string): string {
  return text
    .replace(URL_USERINFO, (_m, head: string, pw: string) => (isRedacted(pw) ? _m : `${head}${REDACTED}@`))
    .replace(KEY_VALUE, (m, key: string, sep: string, value: string) =>
      isRedacted(value) ? m : `${key}${sep}${REDACTED}`,
    )
    .replace(FLAG_VALUE, (m, flag: string, value: string) => (isRedacted(value) ? m : `${flag}${REDACTED}`))
    .replace(BEARER, (m, head: string, value: string) => (isRedacted(value) ? m : `${head}${REDACTED}`))
    .replace(SSN, REDACTED);
}

/**
 * Applies `redact` to every string inside a JSON-like value (objects, arrays,
 * strings; other scalars unchanged). Returns a new value; never mutates.
 */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => redactDeep(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = redactDeep(v);
    return out as T;
  }
  return value;
}
