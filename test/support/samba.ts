import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { HostProcess, TestNet } from '../hosts/index.ts';

/**
 * A real Samba server (Debian's smbd) on a test host: the NAS of the
 * robocopy method, exposing the vault's folder as an SMB share with one user
 * and password. Everything of it lives in the host's folder (configuration,
 * passdb, locks, state, logs); smbd runs in the foreground inside the host's
 * namespace (listening on its 198.18 addresses only: the namespace has no
 * other), and the net's destroy() kills it with the host's other children.
 *
 * The SMB user `user` is mapped (username map) onto the host's root, who
 * owns the vault folder: the vault host's sha256sum over SSH and the share
 * see the same files.
 */
export interface SambaServer {
  /** \\<address>\<share> as a Windows client names it. */
  unc: string;
  address: string;
  share: string;
  user: string;
  password: string;
  confPath: string;
  process: HostProcess;
}

export const SMBD = '/usr/sbin/smbd';

/** The reason Samba cannot run here, or undefined. */
export function sambaMissing(): string | undefined {
  for (const p of [SMBD, '/usr/bin/smbclient', '/usr/bin/pdbedit']) if (!existsSync(p)) return `${p} is missing (apt-get install samba smbclient)`;
  return undefined;
}

export async function startSamba<N extends string>(net: TestNet<N>, host: N, o: { share: string; path: string; user: string; password: string; shareOptions?: readonly string[]; segment?: string }): Promise<SambaServer> {
  const h = net.host(host);
  const dir = path.join(path.dirname(h.dataDir), 'samba');
  for (const d of ['private', 'lock', 'state', 'cache', 'run', 'ncalrpc', 'log']) mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  mkdirSync(o.path, { recursive: true });
  const map = path.join(dir, 'users.map');
  writeFileSync(map, `root = ${o.user}\n`);
  const conf = path.join(dir, 'smb.conf');
  writeFileSync(
    conf,
    [
      '[global]',
      '  server role = standalone server',
      '  workgroup = WORKGROUP',
      `  netbios name = ${host.toUpperCase().slice(0, 15)}`,
      '  security = user',
      '  map to guest = never',
      '  restrict anonymous = 2',
      `  passdb backend = tdbsam:${path.join(dir, 'private', 'passdb.tdb')}`,
      `  private dir = ${path.join(dir, 'private')}`,
      `  lock directory = ${path.join(dir, 'lock')}`,
      `  state directory = ${path.join(dir, 'state')}`,
      `  cache directory = ${path.join(dir, 'cache')}`,
      `  pid directory = ${path.join(dir, 'run')}`,
      `  ncalrpc dir = ${path.join(dir, 'ncalrpc')}`,
      `  log file = ${path.join(dir, 'log', 'log.%m')}`,
      `  username map = ${map}`,
      '  smb ports = 445',
      '  disable netbios = yes',
      '  server min protocol = SMB2_10',
      '  load printers = no',
      '  printing = bsd',
      '  printcap name = /dev/null',
      '  disable spoolss = yes',
      '  invalid users =',
      '',
      `[${o.share}]`,
      `  path = ${o.path}`,
      '  read only = no',
      '  browseable = yes',
      ...(o.shareOptions ?? []).map((l) => `  ${l}`),
      '',
    ].join('\n'),
  );
  // The password on stdin, twice (pdbedit -t), never on a command line.
  await h.exec(['pdbedit', '-s', conf, '-a', '-u', 'root', '-t'], { input: `${o.password}\n${o.password}\n` });
  // stdin from /dev/null: smbd takes a socket on stdin for inetd mode, and Node's child pipes are socketpairs.
  // setsid: its own session, so smbd's signals to its process group (at shutdown) never reach the test.
  const process = net.spawn(host, ['setsid', '--wait', 'sh', '-c', 'exec "$0" --foreground --no-process-group --debug-stdout -s "$1" </dev/null', SMBD, conf]);
  let exited = false;
  void process.then(() => {
    exited = true;
  });
  const address = (o.segment ? h.addressOn(o.segment) : undefined) ?? h.address;
  const server: SambaServer = { unc: `\\\\${address}\\${o.share}`, address, share: o.share, user: o.user, password: o.password, confPath: conf, process };
  // Ready when a client can log in and list the share (bounded: smbd starts in well under a second; each try is one connect).
  const auth = path.join(dir, 'client.auth');
  writeFileSync(auth, `username = ${o.user}\npassword = ${o.password}\n`, { mode: 0o600 });
  let last = '';
  for (let i = 0; i < 100; i++) {
    if (exited) { const x = await process; last = `smbd exited ${x.exitCode}: ${String(x.stdout).slice(-1500)} ${String(x.stderr).slice(-800)}`; break; }
    const r = await h.exec(['smbclient', `//${address}/${o.share}`, '-A', auth, '-m', 'SMB3', '-c', 'ls'], { reject: false, timeoutMs: 10_000 });
    if (r.exitCode === 0) return server;
    last = `${r.stdout}${r.stderr}`.trim().slice(-300);
    if (!/NT_STATUS_CONNECTION_REFUSED|Connection refused|NT_STATUS_IO_TIMEOUT/.test(last)) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`smbd on ${host} did not serve //${address}/${o.share}: ${last}`);
}
