/**
 * Real tools the report tests drive: Chromium (rendering) and xmllint
 * (XML well-formedness, XPath counts). A missing tool FAILS the test with the
 * command that installs it; it never skips.
 */
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
export const XMLLINT = process.env.XMLLINT_BIN ?? '/usr/bin/xmllint';

export function requireTool(path: string, aptPackage: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: the report tests need it. Install it with: apt-get install -y ${aptPackage}`);
  }
}

/** Headless Chromium with a fresh profile and every background service off. */
export async function chromium(args: string[], opts: { timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string }> {
  requireTool(CHROMIUM, 'chromium');
  const profile = await mkdtemp(join(tmpdir(), 'rubicon-chromium-'));
  try {
    const r = await execa(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        ...args,
      ],
      { timeout: opts.timeoutMs ?? 60_000, reject: false, stdin: 'ignore' },
    );
    if (r.exitCode !== 0) throw new Error(`chromium exited ${r.exitCode}: ${r.stderr.slice(-2000)}`);
    return { stdout: r.stdout, stderr: r.stderr };
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** URLs of network requests the page itself made (its network isolation key is the file:// page). */
export async function pageRequests(netLogPath: string): Promise<string[]> {
  const log = JSON.parse(await readFile(netLogPath, 'utf8')) as { events: { params?: { url?: string; network_isolation_key?: string } }[] };
  const urls = new Set<string>();
  for (const e of log.events) {
    const p = e.params;
    if (p?.url && p.network_isolation_key?.includes('file://')) urls.add(p.url);
  }
  return [...urls];
}

export async function xmllint(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  requireTool(XMLLINT, 'libxml2-utils');
  const r = await execa(XMLLINT, args, { reject: false, stdin: 'ignore' });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Every reference in `html` that would make a browser fetch something: any
 * src/srcset/poster/data/action/formaction attribute, any href not starting
 * with '#', url(...) that is not a data: URI, @import, and <base>/<link>/
 * <iframe>/<object>/<embed>/<meta http-equiv=refresh>. Only real tags are
 * looked at, so escaped text (a hostile file name) does not count.
 */
export function externalReferences(html: string): string[] {
  const found: string[] = [];
  const tagRe = /<([a-zA-Z][\w-]*)((?:\s[^>]*)?)>/g;
  const attrRe = /([^\s=/>]+)\s*=\s*("([^"]*)"|'([^']*)'|([^\s>]+))/g;
  for (const t of html.matchAll(tagRe)) {
    const name = t[1]!.toLowerCase();
    const attrs = t[2] ?? '';
    if (['base', 'link', 'iframe', 'object', 'embed', 'frame', 'img', 'video', 'audio', 'source'].includes(name)) found.push(`<${name}>`);
    for (const a of attrs.matchAll(attrRe)) {
      const key = a[1]!.toLowerCase();
      const value = a[3] ?? a[4] ?? a[5] ?? '';
      if (['src', 'srcset', 'poster', 'data', 'action', 'formaction', 'background', 'xlink:href'].includes(key)) found.push(`${key}=${value}`);
      if (key === 'href' && !value.startsWith('#')) found.push(`href=${value}`);
      if (key === 'http-equiv' && value.toLowerCase() === 'refresh') found.push('meta refresh');
      if (key === 'style' && /url\(|@import/i.test(value)) found.push(`style=${value}`);
    }
  }
  for (const s of html.matchAll(/<style[^>]*>([\s\S]*?)<\/style>/gi)) {
    const css = s[1]!;
    for (const u of css.matchAll(/url\(\s*(['"]?)([^'")]*)\1\s*\)/gi)) if (!u[2]!.startsWith('data:')) found.push(`url(${u[2]})`);
    if (/@import/i.test(css)) found.push('@import');
  }
  return found;
}
