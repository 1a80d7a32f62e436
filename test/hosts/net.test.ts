// The test-host harness, with real everything: namespaces, veths, bridges,
// Debian's sshd, the OpenSSH client, tmpfs. Each test states what a later
// Rubicon test will rely on.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestNet,
  requireTestNet,
  storyNet,
  sweepStaleTestNets,
  TestNetError,
  type HostProcess,
  type TestNet,
} from './index.ts';
import { useTestNet } from './vitest.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/owner.ts', import.meta.url));
const STRICT = (net: TestNet) => ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${net.knownHostsPath}`];

async function rootLinks(): Promise<string> {
  const r = await execa('ip', ['-o', 'link', 'show']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(':')[1]?.trim())
    .sort()
    .join(' ');
}

function waitForLine(child: HostProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer | string): void => {
      buf += String(d);
      const line = buf.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) {
        child.stdout.off('data', onData);
        resolve(line);
      }
    };
    child.stdout.on('data', onData);
    void child.then((r) => reject(new Error(`exited (${r.exitCode ?? r.signal}) before printing ${pattern}: ${r.stderr}`)));
  });
}

/** Everything a net could leave behind on the machine. */
function leftovers(id: string, pids: number[]): string[] {
  const out: string[] = [];
  out.push(...readdirSync('/run/netns').filter((n) => n.startsWith(`rb-${id}-`)).map((n) => `netns ${n}`));
  if (existsSync('/etc/netns')) out.push(...readdirSync('/etc/netns').filter((n) => n.startsWith(`rb-${id}-`)).map((n) => `/etc/netns/${n}`));
  const dir = `/tmp/rbnet-${id}`;
  if (existsSync(dir)) out.push(dir);
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) if (line.includes(dir)) out.push(`mount ${line.split(' ')[4]}`);
  for (const pid of pids) {
    // Alive = it still has a /proc entry and is not a zombie (a dead process its parent has not reaped yet).
    let state: string | undefined;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch {
      /* gone */
    }
    if (state !== undefined && state !== 'Z' && state !== 'X') out.push(`process ${pid}`);
  }
  return out;
}

interface Made {
  id: string;
  dir: string;
  sshdPid: number;
}

/** Starts fixtures/owner.ts (a plain Node process that creates a net) and waits for its JSON line. */
async function startOwner(mode: 'wait' | 'exit') {
  const owner = execa(process.execPath, [FIXTURE, mode], { reject: false, stdin: 'ignore', buffer: false });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    owner.stdout!.on('data', (d: Buffer) => {
      buf += String(d);
      if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
    });
    owner.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
    void owner.then((r) => reject(new Error(`owner exited early: ${r.exitCode ?? r.signal}`)));
  });
  return { owner, made: JSON.parse(line) as Made };
}

const noNet = requireTestNet();

describe.skipIf(noNet)(`test hosts: real sshd on namespaced hosts${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  let net: TestNet<'ctl' | 'target' | 'vault' | 'pg'>;
  let other: TestNet<'ctl' | 'box'>;
  let linksBefore = '';

  beforeAll(async () => {
    linksBefore = await rootLinks();
    // Two nets created at the same time: they must not collide.
    [net, other] = await Promise.all([
      createTestNet(storyNet({ vault: { diskMb: 1 } })),
      createTestNet({ hosts: { box: { shell: '/bin/dash' } }, segments: { a: ['ctl', 'box'] } }),
    ]);
  });
  afterAll(async () => {
    await Promise.allSettled([net?.destroy(), other?.destroy()]);
  });

  it('every host answers over ssh (BatchMode, strict host keys) as itself: host name, machine id, os-release, home', async () => {
    const ids = new Set<string>();
    for (const name of ['target', 'vault', 'pg'] as const) {
      const host = net.host(name);
      const r = await net.ssh('ctl', name, 'hostname; cat /etc/hostname; cat /etc/machine-id; . /etc/os-release; echo "$ID"; echo "$HOME"', {
        sshOptions: STRICT(net),
      });
      const [hn, etcHostname, machineId, osId, home] = r.stdout.split('\n');
      expect({ hn, etcHostname, machineId, home }).toEqual({ hn: name, etcHostname: name, machineId: host.machineId, home: host.home });
      expect(osId).toMatch(/^[a-z]+$/);
      ids.add(machineId!);
    }
    expect(ids.size).toBe(3);
    expect(ids.has(readFileSync('/etc/machine-id', 'utf8').trim())).toBe(false);
    // By address too: known_hosts names every address.
    const byAddress = await net.exec('ctl', [...net.sshArgv('target', { options: STRICT(net) }).slice(0, -1), `root@${net.host('target').address}`, 'cat /etc/machine-id']);
    expect(byAddress.stdout.trim()).toBe(net.host('target').machineId);
  });

  it('keeps to 198.18.0.0/15 inside its namespaces: the root namespace gains no interface and no address', async () => {
    expect(await rootLinks()).toBe(linksBefore);
    const rootAddrs = (await execa('ip', ['-4', '-o', 'addr', 'show'])).stdout;
    expect(rootAddrs).not.toMatch(/198\.1[89]\./);
    for (const h of Object.values(net.hosts)) {
      const name = h.name as keyof typeof net.hosts;
      for (const a of h.addresses) expect(a.address).toMatch(/^198\.1[89]\.\d+\.\d+$/);
      const routes = await net.exec(name, ['ip', '-4', 'route', 'show']);
      expect(routes.stdout).not.toMatch(/default/);
      const addrs = await net.exec(name, ['ip', '-o', 'addr', 'show']);
      for (const line of addrs.stdout.split('\n')) expect(line).toMatch(/ (lo|eth\d+) +inet6? (127\.0\.0\.1|::1|198\.1[89]\.)/);
    }
  });

  it('pg has no route to target (fails at once, not after a timeout) but reaches vault', async () => {
    const target = net.host('target');
    const vault = net.host('vault');
    expect(net.reachableAddress('pg', 'target')).toBeUndefined();
    expect(net.reachableAddress('pg', 'vault')).toBe(vault.addressOn('b'));

    const route = await net.exec('pg', ['ip', 'route', 'get', target.address], { reject: false });
    expect(route.exitCode).not.toBe(0);
    expect(route.stderr).toMatch(/Network is unreachable/);

    const ssh = await net.ssh('pg', 'target', 'true', { reject: false, sshOptions: ['-o', 'ConnectTimeout=3'] });
    expect(ssh.exitCode).toBe(255);
    expect(ssh.stderr).toMatch(/Network is unreachable/);
    expect(ssh.durationMs).toBeLessThan(2500);

    // The same from Node, with the test's own Node binary inside pg.
    const probe = `const s = require('node:net').connect(22, process.argv[1]);
      s.on('connect', () => { console.log('connected'); s.destroy(); });
      s.on('error', (e) => console.log(e.code));`;
    const toTarget = await net.node('pg', ['-e', probe, target.address]);
    const toVault = await net.node('pg', ['-e', probe, vault.addressOn('b')!]);
    expect([toTarget.stdout.trim(), toVault.stdout.trim()]).toEqual(['ENETUNREACH', 'connected']);

    const viaSsh = await net.ssh('pg', 'vault', 'hostname');
    expect(viaSsh.stdout.trim()).toBe('vault');
  });

  it('net.node runs this Node binary inside ctl, and exec failures name the host', async () => {
    const r = await net.node('ctl', ['-e', 'console.log(process.version, require("node:os").hostname())']);
    expect(r.stdout.trim()).toBe(`${process.version} ctl`);
    await expect(net.exec('target', ['sh', '-c', 'echo nope >&2; exit 3'])).rejects.toThrow(/on host target: `sh -c .*` exited 3: nope/);
  });

  it('the engineer reinstalls the server: new machine id and os-release at once, a new host key fails strict ssh until trusted', async () => {
    const target = net.host('target');
    const oldKey = target.sshd.hostPublicKey;
    await target.setMachineId('0123456789abcdef0123456789abcdef');
    await target.setOsRelease('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n');
    const seen = await net.ssh('ctl', 'target', 'cat /etc/machine-id; . /etc/os-release; echo "$VERSION_ID"');
    expect(seen.stdout.split('\n').slice(0, 2)).toEqual(['0123456789abcdef0123456789abcdef', '13']);

    const newKey = await target.sshd.regenerateHostKey();
    expect(newKey).not.toBe(oldKey);
    const refused = await net.ssh('ctl', 'target', 'true', { reject: false, sshOptions: STRICT(net) });
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED/);
    expect(refused.stderr).toMatch(/Host key verification failed/);
    // Other hosts are untouched.
    expect((await net.ssh('ctl', 'vault', 'hostname')).stdout.trim()).toBe('vault');

    await net.updateKnownHosts();
    expect(readFileSync(net.knownHostsPath, 'utf8')).toContain(newKey.split(' ')[1]);
    const again = await net.ssh('ctl', 'target', 'hostname', { sshOptions: STRICT(net) });
    expect(again.stdout.trim()).toBe('target');
  });

  it('sshd.kill() drops open sessions and refuses new connections; start() brings it back; stop() too', async () => {
    const target = net.host('target');
    const session = net.spawn('ctl', [...net.sshArgv('target'), 'echo ready; exec sleep 60']);
    await waitForLine(session, /^ready$/);
    const killedAt = performance.now();
    await target.sshd.kill();
    expect(target.sshd.running).toBe(false);
    const ended = await session;
    expect(performance.now() - killedAt).toBeLessThan(3000);
    expect(ended.exitCode).toBe(255);
    expect(ended.stderr).toMatch(/closed by remote host|Connection reset|Broken pipe/);

    const refused = await net.ssh('ctl', 'target', 'true', { reject: false });
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/Connection refused/);

    await target.sshd.start();
    expect((await net.ssh('ctl', 'target', 'hostname')).stdout.trim()).toBe('target');

    await target.sshd.stop();
    expect((await net.ssh('ctl', 'target', 'true', { reject: false })).stderr).toMatch(/Connection refused/);
    await target.sshd.start();
    expect((await net.ssh('ctl', 'target', 'true')).exitCode).toBe(0);
  });

  it("the vault host's small tmpfs disk fills up: ENOSPC on write, over ssh and locally", async () => {
    const vault = net.host('vault');
    const fill = path.join(vault.dataDir, 'fill');
    const r = await net.ssh('ctl', 'vault', `head -c 2097152 /dev/zero > ${fill}`, { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/No space left on device/);
    await expect(writeFile(path.join(vault.dataDir, 'more'), Buffer.alloc(2 * 1024 * 1024))).rejects.toMatchObject({ code: 'ENOSPC' });
    await net.exec('vault', ['rm', '-f', fill, path.join(vault.dataDir, 'more')]);
    // The other hosts' data folders are plain folders and take it.
    await writeFile(path.join(net.host('target').dataDir, 'two-mb'), Buffer.alloc(2 * 1024 * 1024));
  });

  it('authorized keys: an expiry-time in the past is refused, one in the future accepted, revoke takes it away', async () => {
    const vault = net.host('vault');
    const grant = await net.makeClientKey('grant');
    const login = () => net.ssh('ctl', 'vault', 'echo in', { key: grant, reject: false });

    const unknown = await login();
    expect(unknown.stderr).toMatch(/Permission denied \(publickey\)/);

    await vault.authorize(`expiry-time="20000101Z" ${grant.publicKey}`);
    const expired = await login();
    expect(expired.exitCode).toBe(255);
    expect(expired.stderr).toMatch(/Permission denied \(publickey\)/);
    // sshd logs the reason only at DEBUG; the contrast with the same key and a future time below is the proof.
    expect(readFileSync(vault.sshd.paths.log, 'utf8')).toMatch(/Refused by key options/);

    expect(await vault.revoke(grant.publicKey)).toBe(1);
    const stamp = new Date(Date.now() + 3_600_000).toISOString().replace(/[-:T]/g, '').slice(0, 12);
    await vault.authorize(`expiry-time="${stamp}Z" ${grant.publicKey}`);
    await vault.authorize(`expiry-time="${stamp}Z" ${grant.publicKey}`); // idempotent
    expect(vault.authorizedKeys()).toHaveLength(2); // the net's client key + the grant
    expect((await login()).stdout.trim()).toBe('in');

    expect(await vault.revoke(grant.publicKey)).toBe(1);
    expect((await login()).stderr).toMatch(/Permission denied \(publickey\)/);
    // The net's own key still works.
    expect((await net.ssh('ctl', 'vault', 'echo in')).stdout.trim()).toBe('in');
  });

  it("a host's login shell is configurable: sshd runs the command with it", async () => {
    const dash = await other.ssh('ctl', 'box', 'echo "$0"; readlink /proc/$$/exe; true');
    expect(dash.stdout.trim().split('\n')).toEqual(['dash', expect.stringMatching(/\/dash$/)]);
    // A host without `shell` keeps this machine's root shell.
    const rootShell = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('root:'))!.split(':')[6]!;
    const dflt = await net.ssh('ctl', 'target', 'echo "$0"; readlink /proc/$$/exe; true');
    expect(dflt.stdout.trim().split('\n').map((l) => path.basename(l))).toEqual([path.basename(rootShell), path.basename(rootShell)]);
  });

  it('two nets made at the same time do not collide: own ids, names, folders; one cannot open a session on the other', async () => {
    expect(other.id).not.toBe(net.id);
    expect(other.dir).not.toBe(net.dir);
    expect(other.host('ctl').netns).toBe(`rb-${other.id}-ctl`);
    const mine = new Set(Object.values(net.hosts).map((h) => h.netns));
    expect(Object.values(other.hosts).some((h) => mine.has(h.netns))).toBe(false);
    for (const h of [...Object.values(net.hosts), ...Object.values(other.hosts)]) {
      expect(h.netns).toMatch(/^rb-[0-9a-f]{6}-[a-z0-9]+$/);
      for (const a of h.addresses) expect(a.iface.length).toBeLessThanOrEqual(15);
    }
    // From the other net's ctl, net's target is either unreachable or (same /24 by chance) a different host key: never a session.
    const cross = await other.exec('ctl', [...net.sshArgv('target', { options: STRICT(net) }).slice(0, -1), `root@${net.host('target').address}`, 'true'], { reject: false });
    expect(cross.exitCode).toBe(255);
    expect((await other.ssh('ctl', 'box', 'hostname')).stdout.trim()).toBe('box');
  });

  it('a net whose owner was SIGKILLed is swept: namespaces, mounts, /etc/netns, folder, sshd', async () => {
    const { owner, made } = await startOwner('wait');
    owner.kill('SIGKILL');
    await owner;
    const before = leftovers(made.id, [made.sshdPid]);
    expect(before).toEqual(expect.arrayContaining([`netns rb-${made.id}-target`, `/etc/netns/rb-${made.id}-ctl`, made.dir, `process ${made.sshdPid}`]));
    expect(before.some((l) => l.startsWith('mount '))).toBe(true);

    const swept = sweepStaleTestNets();
    expect(swept.problems).toEqual([]);
    // (removed by this sweep, or by a concurrent test run's sweep: either way not kept, and gone)
    expect(swept.kept).not.toContain(made.id);
    expect(swept.kept).toEqual(expect.arrayContaining([net.id, other.id])); // live owners are left alone
    expect(leftovers(made.id, [made.sshdPid])).toEqual([]);
    expect((await net.ssh('ctl', 'target', 'true')).exitCode).toBe(0);
  });

  it('an owner that exits or is sent SIGTERM without destroy() leaves nothing behind', async () => {
    const [exited, termed] = await Promise.all([startOwner('exit'), startOwner('wait')]);
    termed.owner.kill('SIGTERM');
    const [e, t] = await Promise.all([exited.owner, termed.owner]);
    expect([e.exitCode, t.signal]).toEqual([0, 'SIGTERM']);
    expect(leftovers(exited.made.id, [exited.made.sshdPid])).toEqual([]);
    expect(leftovers(termed.made.id, [termed.made.sshdPid])).toEqual([]);
  });

  it('a net that fails half-way through creation is removed again, and the error says why', async () => {
    const failed = await createTestNet({ hosts: { h: { shell: '/nonexistent/pwsh' } }, segments: { a: ['ctl', 'h'] } }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failed).toBeInstanceOf(TestNetError);
    expect(failed?.message).toMatch(/could not create test net [0-9a-f]{6}: cannot give host h the shell \/nonexistent\/pwsh: it does not exist/);
    const id = /test net ([0-9a-f]{6})/.exec(failed!.message)![1]!;
    expect(leftovers(id, [])).toEqual([]);
  });

  it('destroy() leaves no namespace, mount, /etc/netns folder, folder or process behind, and is idempotent', async () => {
    for (const n of [other, net] as TestNet[]) {
      const pids = Object.values(n.hosts).flatMap((h) => (h.sshd.pid === undefined ? [] : [h.sshd.pid]));
      expect(pids.length).toBeGreaterThan(0);
      const child = n.spawn('ctl', ['sleep', '60']);
      expect(leftovers(n.id, []).length).toBeGreaterThan(0);
      await n.destroy();
      await n.destroy();
      expect(leftovers(n.id, [...pids, child.pid!])).toEqual([]);
      expect((await child).signal).toBe('SIGKILL');
      await expect(n.exec('ctl', ['true'])).rejects.toThrow(TestNetError);
    }
    expect(await rootLinks()).toBe(linksBefore);
  });
});

describe.skipIf(noNet)(`useTestNet (vitest glue)${noNet ? ` (skipped: ${noNet})` : ''}`, () => {
  const net = useTestNet({ hosts: { solo: { sshd: true } }, segments: { a: ['ctl', 'solo'] } });

  it('creates the net in beforeAll and hands it to the tests', async () => {
    expect((await net().ssh('ctl', 'solo', 'hostname')).stdout.trim()).toBe('solo');
    expect(net().host('ctl').sshd.enabled).toBe(false);
    expect(() => net().host('ctl').sshd.hostPublicKey).toThrow(/host ctl has no sshd/);
  });
});
