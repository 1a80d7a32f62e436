/**
 * The shape of a test net (what a test asks for) and its plan (names,
 * subnets, addresses, interface names), computed without touching the
 * machine. Pure: `planNet` is a function of the spec, the id and the random
 * subnet picks, so it is tested as a table (test/hosts/spec.test.ts).
 */

/** The controller host every net has: the orchestrator (Rubicon's CLI, a Node script) runs here. */
export const CTL = 'ctl';

/** Options of one host. Every field is optional. */
export interface HostSpec {
  /** Run an sshd on this host (Debian's /usr/sbin/sshd, port 22 on each of its addresses). Default: true, false for `ctl`. */
  sshd?: boolean;
  /** Mount a tmpfs of this many MiB as the host's data folder, so it can fill up (ENOSPC). Default: a plain folder on /tmp. */
  diskMb?: number;
  /**
   * root's login shell on this host, as sshd sees it (an absolute path to an
   * executable; e.g. `/root/.dotnet/tools/pwsh`). The host gets its own
   * /etc/passwd with that shell, so sshd runs `SHELL -c "command"` exactly as
   * on a real server whose root shell it is. Default: this machine's.
   */
  shell?: string;
  /** The host's /etc/os-release text. Default: this machine's /etc/os-release. */
  osRelease?: string;
  /** The host's /etc/machine-id (32 lowercase hex digits). Default: random. */
  machineId?: string;
}

/**
 * A net: hosts and the segments (one bridge each) that link them. A host
 * reaches exactly the hosts it shares a segment with; nothing routes between
 * segments and there is no default route.
 */
export interface TestNetSpec {
  /** Hosts by name (`[a-z][a-z0-9]{0,9}`, not `sw`). `ctl` is always there; list it here only to set its options. */
  hosts: Readonly<Record<string, HostSpec>>;
  /** Segments by name (`[a-z][a-z0-9]{0,3}`) → the hosts on it (`ctl` included where it should be). */
  segments: Readonly<Record<string, readonly string[]>>;
}

/** Host names of a spec, `ctl` included. */
export type HostNameOf<S extends TestNetSpec> = Extract<keyof S['hosts'], string> | typeof CTL;

/**
 * The story's topology (docs/test-hosts.md): segment `a` {ctl, target,
 * vault}, segment `b` {ctl, pg, vault}. `pg`, the proving ground, has no
 * route to `target`; `ctl` and `vault` have an address on both segments.
 */
export function storyNet(options: { target?: HostSpec; vault?: HostSpec; pg?: HostSpec } = {}) {
  return {
    hosts: { target: options.target ?? {}, vault: options.vault ?? {}, pg: options.pg ?? {} },
    segments: { a: [CTL, 'target', 'vault'], b: [CTL, 'pg', 'vault'] },
  } as const satisfies TestNetSpec;
}

export const HOST_NAME = /^[a-z][a-z0-9]{0,9}$/;
export const SEGMENT_NAME = /^[a-z][a-z0-9]{0,3}$/;
/** The namespace that holds the net's bridges is `rb-<id>-sw`, so no host may be called that. */
export const SWITCH = 'sw';
export const NET_ID = /^[0-9a-f]{6}$/;
/** Namespace names of test nets: `rb-<id>-<host>`. */
export const NETNS_NAME = /^rb-([0-9a-f]{6})-([a-z][a-z0-9]*)$/;
/** How many /24 blocks 198.18.0.0/15 holds. */
export const BLOCKS = 512;
/** First host number on a segment (.11, .12, ... in the order the segment lists its hosts). */
const FIRST_HOST = 11;

export interface InterfacePlan {
  segment: string;
  /** Interface name inside the host's namespace: eth0, eth1, ... in the order of the spec's segments. */
  iface: string;
  /** Interface name of the other end, inside the switch namespace: `<segment>-<host>` (≤ 15 characters). */
  switchIface: string;
  address: string;
  prefix: number;
}

export interface HostPlan {
  name: string;
  netns: string;
  sshd: boolean;
  diskMb: number | undefined;
  shell: string | undefined;
  osRelease: string | undefined;
  machineId: string | undefined;
  interfaces: InterfacePlan[];
}

export interface SegmentPlan {
  name: string;
  bridge: string;
  /** e.g. 198.19.37.0/24 */
  subnet: string;
  /** The subnet's first three octets, e.g. 198.19.37 */
  base: string;
  hosts: string[];
}

export interface NetPlan {
  id: string;
  switchNetns: string;
  hosts: HostPlan[];
  segments: SegmentPlan[];
}

export class TestNetSpecError extends Error {
  override name = 'TestNetSpecError';
}

export function netnsName(id: string, host: string): string {
  return `rb-${id}-${host}`;
}

/** The /24 block number (0..511) → its first three octets inside 198.18.0.0/15. */
export function blockBase(block: number): string {
  if (!Number.isInteger(block) || block < 0 || block >= BLOCKS) throw new RangeError(`block ${block} is outside 0..${BLOCKS - 1}`);
  return `198.${18 + (block >> 8)}.${block & 255}`;
}

/** True when `address` (dotted IPv4) lies inside 198.18.0.0/15. */
export function inBenchmarkRange(address: string): boolean {
  const m = /^198\.(18|19)\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  return m !== null && Number(m[2]) <= 255 && Number(m[3]) <= 255;
}

/**
 * Validates a spec and computes the plan. `blocks` are the /24 blocks to use,
 * one per segment in the spec's order (distinct, 0..511); the caller draws
 * them at random. Throws TestNetSpecError naming the field at fault.
 */
export function planNet(spec: TestNetSpec, id: string, blocks: readonly number[]): NetPlan {
  if (!NET_ID.test(id)) throw new TestNetSpecError(`net id "${id}" must be 6 lowercase hex digits`);
  const hostNames = [CTL, ...Object.keys(spec.hosts).filter((h) => h !== CTL)];
  for (const h of hostNames) {
    if (!HOST_NAME.test(h)) throw new TestNetSpecError(`host name "${h}" must match ${HOST_NAME} (it becomes part of namespace and interface names)`);
    if (h === SWITCH) throw new TestNetSpecError(`host name "${SWITCH}" is reserved for the namespace of the net's bridges; pick another name`);
  }
  const segmentNames = Object.keys(spec.segments);
  if (segmentNames.length === 0) throw new TestNetSpecError('a test net needs at least one segment (spec.segments)');
  if (blocks.length !== segmentNames.length) throw new TestNetSpecError(`need one /24 block per segment: ${segmentNames.length} segments, ${blocks.length} blocks`);
  if (new Set(blocks).size !== blocks.length) throw new TestNetSpecError(`the segments' /24 blocks must be distinct: ${blocks.join(', ')}`);

  const segments: SegmentPlan[] = segmentNames.map((name, i) => {
    if (!SEGMENT_NAME.test(name)) throw new TestNetSpecError(`segment name "${name}" must match ${SEGMENT_NAME} (interface names have at most 15 characters)`);
    const members = spec.segments[name] ?? [];
    if (members.length === 0) throw new TestNetSpecError(`segment "${name}" lists no hosts`);
    const seen = new Set<string>();
    for (const h of members) {
      if (!hostNames.includes(h)) throw new TestNetSpecError(`segment "${name}" lists host "${h}", which is not in spec.hosts (declare it there, or fix the name)`);
      if (seen.has(h)) throw new TestNetSpecError(`segment "${name}" lists host "${h}" twice`);
      seen.add(h);
    }
    if (members.length > 240) throw new TestNetSpecError(`segment "${name}" has more than 240 hosts`);
    const base = blockBase(blocks[i]!);
    return { name, bridge: `br-${name}`, subnet: `${base}.0/24`, base, hosts: [...members] };
  });

  const hosts: HostPlan[] = hostNames.map((name) => {
    const o: HostSpec = spec.hosts[name] ?? {};
    if (o.diskMb !== undefined && (!Number.isInteger(o.diskMb) || o.diskMb < 1 || o.diskMb > 4096)) {
      throw new TestNetSpecError(`hosts.${name}.diskMb must be a whole number of MiB between 1 and 4096, not ${o.diskMb}`);
    }
    if (o.shell !== undefined && !o.shell.startsWith('/')) throw new TestNetSpecError(`hosts.${name}.shell must be an absolute path, not "${o.shell}"`);
    if (o.machineId !== undefined && !/^[0-9a-f]{32}$/.test(o.machineId)) {
      throw new TestNetSpecError(`hosts.${name}.machineId must be 32 lowercase hex digits (machine-id(5))`);
    }
    const interfaces: InterfacePlan[] = [];
    for (const seg of segments) {
      const index = seg.hosts.indexOf(name);
      if (index < 0) continue;
      interfaces.push({
        segment: seg.name,
        iface: `eth${interfaces.length}`,
        switchIface: `${seg.name}-${name}`,
        address: `${seg.base}.${FIRST_HOST + index}`,
        prefix: 24,
      });
    }
    if (interfaces.length === 0 && name !== CTL) throw new TestNetSpecError(`host "${name}" is on no segment: add it to one of spec.segments`);
    return {
      name,
      netns: netnsName(id, name),
      sshd: o.sshd ?? name !== CTL,
      diskMb: o.diskMb,
      shell: o.shell,
      osRelease: o.osRelease,
      machineId: o.machineId,
      interfaces,
    };
  });
  return { id, switchNetns: netnsName(id, SWITCH), hosts, segments };
}

/**
 * `ip -batch` scripts that build a plan: `root` runs in the root namespace
 * (it only creates namespaces and creates links directly inside them, so no
 * interface ever appears in the root namespace), then `perNetns[ns]` runs
 * with `ip -n ns -batch -`.
 */
export function ipScripts(plan: NetPlan): { root: string[]; perNetns: Map<string, string[]> } {
  const root: string[] = [`netns add ${plan.switchNetns}`, ...plan.hosts.map((h) => `netns add ${h.netns}`)];
  const perNetns = new Map<string, string[]>();
  const sw: string[] = ['link set lo up'];
  perNetns.set(plan.switchNetns, sw);
  for (const seg of plan.segments) {
    root.push(`link add ${seg.bridge} netns ${plan.switchNetns} type bridge`);
    sw.push(`link set ${seg.bridge} addrgenmode none`, `link set ${seg.bridge} up`);
  }
  for (const h of plan.hosts) {
    const cmds: string[] = ['link set lo up'];
    for (const i of h.interfaces) {
      root.push(`link add ${i.switchIface} netns ${plan.switchNetns} type veth peer name ${i.iface} netns ${h.netns}`);
      sw.push(`link set ${i.switchIface} addrgenmode none`, `link set ${i.switchIface} master br-${i.segment}`, `link set ${i.switchIface} up`);
      cmds.push(`link set ${i.iface} addrgenmode none`, `addr add ${i.address}/${i.prefix} dev ${i.iface}`, `link set ${i.iface} up`);
    }
    perNetns.set(h.netns, cmds);
  }
  return { root, perNetns };
}

/**
 * The /etc/hosts a host sees: every host of the net by name, at its address
 * on a segment the viewer shares with it, else at its first address (so a
 * name the viewer has no route to still resolves, and connecting to it fails
 * with "Network is unreachable", as on a real network).
 */
export function hostsFile(plan: NetPlan, viewer: string): string {
  const me = plan.hosts.find((h) => h.name === viewer);
  const mySegments = new Set(me?.interfaces.map((i) => i.segment) ?? []);
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const h of plan.hosts) {
    const shared = h.interfaces.find((i) => mySegments.has(i.segment));
    const address = shared?.address ?? h.interfaces[0]?.address;
    if (address !== undefined) lines.push(`${address}\t${h.name}`);
  }
  return lines.join('\n') + '\n';
}

/** The address of `to` on a segment it shares with `from`, or undefined when they share none. */
export function reachableAddress(plan: NetPlan, from: string, to: string): string | undefined {
  const a = plan.hosts.find((h) => h.name === from);
  const b = plan.hosts.find((h) => h.name === to);
  if (!a || !b) return undefined;
  const segs = new Set(a.interfaces.map((i) => i.segment));
  return b.interfaces.find((i) => segs.has(i.segment))?.address;
}
