// The pure parts of the test-host harness: the plan of a net (names,
// subnets, addresses), its ip scripts and /etc/hosts, and the preflight.
// No root needed.
import { describe, expect, it } from 'vitest';
import { keyBlob, passwdForHost } from './net.ts';
import { blockBase, hostsFile, inBenchmarkRange, ipScripts, planNet, reachableAddress, storyNet, TestNetSpecError } from './spec.ts';
import { preflight, requireTestNet } from './tools.ts';

describe('planNet', () => {
  const plan = planNet(storyNet({ vault: { diskMb: 8 } }), 'a1b2c3', [3, 300]);

  it('gives the story its topology: ctl and vault on both segments, target only on a, pg only on b', () => {
    const where = Object.fromEntries(plan.hosts.map((h) => [h.name, h.interfaces.map((i) => `${i.iface}@${i.segment}=${i.address}`)]));
    expect(where).toEqual({
      ctl: ['eth0@a=198.18.3.11', 'eth1@b=198.19.44.11'],
      target: ['eth0@a=198.18.3.12'],
      vault: ['eth0@a=198.18.3.13', 'eth1@b=198.19.44.13'],
      pg: ['eth0@b=198.19.44.12'],
    });
    expect(plan.hosts.map((h) => [h.name, h.netns, h.sshd])).toEqual([
      ['ctl', 'rb-a1b2c3-ctl', false],
      ['target', 'rb-a1b2c3-target', true],
      ['vault', 'rb-a1b2c3-vault', true],
      ['pg', 'rb-a1b2c3-pg', true],
    ]);
    expect(plan.switchNetns).toBe('rb-a1b2c3-sw');
    expect(plan.hosts.find((h) => h.name === 'vault')?.diskMb).toBe(8);
  });

  it('routes only within a segment: pg has no address of target, but one of vault', () => {
    expect(reachableAddress(plan, 'pg', 'target')).toBeUndefined();
    expect(reachableAddress(plan, 'pg', 'vault')).toBe('198.19.44.13');
    expect(reachableAddress(plan, 'ctl', 'target')).toBe('198.18.3.12');
    // pg's /etc/hosts still names target (at an address it cannot reach), and vault at its segment-b address.
    expect(hostsFile(plan, 'pg')).toContain('198.18.3.12\ttarget\n');
    expect(hostsFile(plan, 'pg')).toContain('198.19.44.13\tvault\n');
  });

  it('builds every link inside a namespace: the root script only adds namespaces and links with netns targets', () => {
    const { root, perNetns } = ipScripts(plan);
    for (const line of root) expect(line).toMatch(/^netns add rb-a1b2c3-[a-z]+$|^link add \S+ netns rb-a1b2c3-sw type (bridge|veth peer name eth\d netns rb-a1b2c3-[a-z]+)$/);
    expect(root.filter((l) => l.includes('type veth'))).toHaveLength(6);
    for (const [, lines] of perNetns) expect(lines[0]).toBe('link set lo up');
    for (const line of [...perNetns.values()].flat()) {
      const name = /^link set (\S+)/.exec(line)?.[1];
      if (name) expect(name.length).toBeLessThanOrEqual(15);
    }
    expect([...perNetns.values()].flat().filter((l) => l.startsWith('addr add')).every((l) => inBenchmarkRange(l.split(' ')[2]!.split('/')[0]!))).toBe(true);
  });

  it('keeps every /24 inside 198.18.0.0/15', () => {
    expect([blockBase(0), blockBase(255), blockBase(256), blockBase(511)]).toEqual(['198.18.0', '198.18.255', '198.19.0', '198.19.255']);
    expect(() => blockBase(512)).toThrow(RangeError);
    expect([inBenchmarkRange('198.19.255.1'), inBenchmarkRange('198.20.0.1'), inBenchmarkRange('10.0.0.1')]).toEqual([true, false, false]);
  });

  it.each([
    [{ hosts: { sw: {} }, segments: { a: ['ctl', 'sw'] } }, /reserved/],
    [{ hosts: { Target: {} }, segments: { a: ['ctl', 'Target'] } }, /host name "Target"/],
    [{ hosts: { averylonghostname: {} }, segments: { a: ['averylonghostname'] } }, /host name "averylonghostname"/],
    [{ hosts: { target: {} }, segments: { a: ['ctl', 'tagret'] } }, /lists host "tagret", which is not in spec.hosts/],
    [{ hosts: { target: {}, lonely: {} }, segments: { a: ['ctl', 'target'] } }, /host "lonely" is on no segment/],
    [{ hosts: { target: {} }, segments: { segmentA: ['ctl', 'target'] } }, /segment name "segmentA"/],
    [{ hosts: { target: { diskMb: 0.5 } }, segments: { a: ['target'] } }, /hosts.target.diskMb/],
    [{ hosts: { target: { shell: 'pwsh' } }, segments: { a: ['target'] } }, /hosts.target.shell must be an absolute path/],
    [{ hosts: { target: { machineId: 'ABC' } }, segments: { a: ['target'] } }, /hosts.target.machineId/],
    [{ hosts: { target: {} }, segments: { a: ['target', 'target'] } }, /lists host "target" twice/],
    [{ hosts: {}, segments: {} }, /at least one segment/],
  ])('refuses a bad spec, naming the field (%#)', (spec, message) => {
    expect(() => planNet(spec, 'a1b2c3', Object.keys(spec.segments).map((_, i) => i))).toThrow(TestNetSpecError);
    expect(() => planNet(spec, 'a1b2c3', Object.keys(spec.segments).map((_, i) => i))).toThrow(message);
  });
});

describe('preflight', () => {
  it('names everything missing at once, with the package to install', () => {
    const r = preflight({ PATH: '/nonexistent', uid: 1000, sshd: '/nonexistent/sshd', etc: '/nonexistent' });
    expect(r.tools).toBeUndefined();
    expect(r.reason).toMatch(/needs root .* uid 1000/);
    expect(r.reason).toContain('ip (apt-get install iproute2)');
    expect(r.reason).toContain('/nonexistent/sshd (apt-get install openssh-server)');
    expect(r.reason).toContain('ssh-keygen (apt-get install openssh-client)');
    expect(r.reason).toMatch(/\/nonexistent\/machine-id.*systemd-machine-id-setup/);
  });

  it('requireTestNet never skips in CI (the tests then fail with the reason), and gives the reason elsewhere', () => {
    const ci = process.env.CI;
    try {
      process.env.CI = 'true';
      expect(requireTestNet()).toBeUndefined();
      delete process.env.CI;
      expect(requireTestNet()).toBe(preflight().reason);
    } finally {
      if (ci === undefined) delete process.env.CI;
      else process.env.CI = ci;
    }
  });

  it('says plainly when it is not Linux', () => {
    expect(preflight({ platform: 'darwin' }).reason).toMatch(/needs Linux network namespaces; this is darwin/);
  });
});

describe('helpers', () => {
  it('keyBlob finds the key in an authorized_keys line, options and comment aside', () => {
    expect(keyBlob('expiry-time="20300101Z",command="echo a b" ssh-ed25519 AAAAC3Nza+/= grant@x')).toBe('ssh-ed25519 AAAAC3Nza+/=');
    expect(keyBlob('ssh-ed25519 AAAAC3Nza')).toBe('ssh-ed25519 AAAAC3Nza');
    expect(keyBlob('not a key')).toBeUndefined();
  });

  it("passwdForHost gives root the host's own home and, when asked, another shell", () => {
    const passwd = 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n';
    expect(passwdForHost(passwd, '/tmp/h/root', undefined, 'h')).toBe('root:x:0:0:root:/tmp/h/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n');
    expect(passwdForHost(passwd, '/tmp/h/root', '/bin/sh', 'h').split('\n')[0]).toBe('root:x:0:0:root:/tmp/h/root:/bin/sh');
    expect(() => passwdForHost(passwd, '/tmp/h/root', '/nonexistent/pwsh', 'h')).toThrow(/host h the shell \/nonexistent\/pwsh: it does not exist/);
  });
});
