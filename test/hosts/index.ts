/**
 * Test hosts: real servers on a real network of Linux network namespaces,
 * made by the tests (design note: docs/test-hosts.md).
 * Usable from vitest tests and from plain Node child processes. Needs root.
 *
 * ## Making a net
 *
 *     import { createTestNet, storyNet, requireTestNet } from '../hosts/index.ts';
 *     const net = await createTestNet(storyNet({ vault: { diskMb: 8 } }));
 *     try { ... } finally { await net.destroy(); }
 *
 * or, in a vitest file, `const net = useTestNet(storyNet())` from
 * './vitest.ts' (creates in beforeAll, destroys in afterAll; call net()).
 *
 * `createTestNet(spec)`: spec = `{ hosts: { name: HostSpec }, segments: {
 * seg: [host, ...] } }`. Every net also has the controller host `ctl`, where
 * the orchestrator runs (Rubicon's CLI via `net.node('ctl', ...)`); put it on
 * the segments it should reach. `storyNet()` is the story's topology:
 * segment a {ctl, target, vault}, segment b {ctl, pg, vault}: `pg` (the
 * proving ground) has no route to `target`; `ctl` and `vault` are on both.
 *
 * HostSpec (all optional): `sshd` (default true; false for ctl), `diskMb`
 * (a tmpfs of that size as the data folder), `shell` (root's login shell on
 * that host, e.g. '/root/.dotnet/tools/pwsh'), `osRelease`, `machineId`.
 *
 * What a net is, exactly:
 * - a unique 6-hex id per call; namespaces `rb-<id>-<host>` plus
 *   `rb-<id>-sw` holding one bridge `br-<seg>` per segment; each host has an
 *   interface eth0, eth1... per segment (spec order), joined to the bridge by
 *   a veth whose other end is `<seg>-<host>` in the switch namespace. Links
 *   are created directly inside their namespaces: the root namespace never
 *   sees them, and nothing in it gets a 198.18 address.
 * - one random /24 per segment inside 198.18.0.0/15; a host's address on a
 *   segment is .11, .12, ... in the order the segment lists its hosts. No
 *   default route, no forwarding, no IPv6 address but ::1: a host reaches
 *   exactly the hosts it shares a segment with; anything else fails at once
 *   with ENETUNREACH ("Network is unreachable"). `lo` is up everywhere.
 * - per host, files bound over /etc by `ip netns exec` (from
 *   /etc/netns/<ns>/): hostname, hosts (every host name → its address as this
 *   host reaches it), machine-id (random), os-release (this machine's),
 *   passwd (only with `shell`). Commands in a host also get its host name
 *   (`hostname`, `uname -n`) from a UTS namespace of their own.
 * - per host, a data folder `host.dataDir` = /tmp/rbnet-<id>/<host>/srv (its
 *   "disk"). Every namespace shares the filesystem: the test reads and writes
 *   host files directly by absolute path.
 * - per host with an sshd: /usr/sbin/sshd on port 22 of each of its
 *   addresses, its own ed25519 host key, config, pid file, log
 *   (`host.sshd.paths`) in /tmp/rbnet-<id>/<host>/ssh. root logs in with a
 *   key only (PermitRootLogin prohibit-password, PasswordAuthentication no,
 *   no PAM, StrictModes no); authorized_keys = `host.authorizedKeysPath`,
 *   holding the net's client key at creation. sshd is process 1 of a PID
 *   namespace of its own (sessions see only the host's processes).
 *
 * ## The net (TestNet)
 * - `id`, `dir` (/tmp/rbnet-<id>), `plan` (every name and address), `info()`
 *   (plain JSON, also in <dir>/net.json for child processes).
 * - `hosts.<name>` / `host(name)`: TestHost (below).
 * - `clientKey`: { privateKeyPath, publicKeyPath, publicKey }, accepted by
 *   every sshd for root. `makeClientKey(name)`: another key, authorized
 *   nowhere.
 * - `knownHostsPath`: known_hosts with each host's name, addresses and host
 *   key, as of creation. It does NOT follow regenerateHostKey();
 *   `updateKnownHosts()` rewrites it; `knownHostsText(hosts?)` gives the text
 *   for a subset (for "unknown host key" tests).
 * - `sshConfigPath`: ssh_config with User root, IdentitiesOnly,
 *   StrictHostKeyChecking yes against knownHostsPath, BatchMode yes,
 *   ConnectTimeout 5 (no IdentityFile: pass -i).
 *   `sshArgv(to, {key?, options?})` is the full ssh argv (append the remote
 *   command), `ssh(from, to, command, opts)` runs it from host `from`.
 * - `reachableAddress(from, to)`: `to`'s address on a shared segment, or
 *   undefined (no route). `unusedAddress(segment)`: an address nobody has.
 * - `exec(host, argv, {input?, env?, cwd?, timeoutMs?, signal?, reject?})`:
 *   runs inside the host, waits; HostExecResult {exitCode, signal, stdout,
 *   stderr, timedOut, durationMs}; throws TestNetError on failure unless
 *   `reject: false`. Default timeout 60 s.
 * - `spawn(host, argv, opts)` / `node(host, scriptOrArgs, opts)`: long
 *   commands; return execa's subprocess (pid, stdout, kill(), awaitable,
 *   never rejects). `node` runs process.execPath, the same Node binary.
 *   stdin is closed at once unless `keepStdinOpen` or `input`.
 * - `destroy()`: kills every sshd, session and child, unmounts tmpfs disks,
 *   deletes namespaces (veths and bridges go with them), /etc/netns/<ns> and
 *   the net's folder. Idempotent; rejects listing anything it could not
 *   remove. If the process exits first (normally or on SIGINT/SIGTERM/SIGHUP)
 *   the same teardown runs synchronously.
 *
 * ## A host (TestHost)
 * - `name`, `netns`, `addresses` [{segment, iface, address, prefix}],
 *   `address` (the first), `addressOn(segment)`, `dataDir`, `etcDir`.
 * - `machineId`, `osRelease` (read), `setMachineId(id)`, `setOsRelease(text)`:
 *   take effect at once for every process of the host, running ones too.
 * - `authorize(line)`: appends an authorized_keys line (options such as
 *   `expiry-time="YYYYMMDDHHMM[SS]Z"` honoured by sshd; Z means UTC, without
 *   it the host's local time). `revoke(keyOrLine)`: removes every line with
 *   that key, returns how many. `authorizedKeys()` lists the lines.
 * - `sshd`: `start()` (resolves once listening), `stop()` (SIGTERM),
 *   `kill()` (SIGKILL): both resolve when the listener AND every session of
 *   the host are gone, so open connections have dropped; `running`, `pid`,
 *   `hostPublicKey`, `regenerateHostKey()` (new key, restarts sshd if it
 *   ran, returns the public key line), `paths`.
 * - `exec(argv, opts)`: net.exec on this host.
 * - The login shell: `shell` in the spec gives the host its own /etc/passwd
 *   in which root's shell is that program; sshd then runs `SHELL -c
 *   "<command>"` as on a real server (no ForceCommand wrapper: sftp and
 *   subsystems keep working; the sftp subsystem is internal-sftp). For pwsh:
 *   `shell: '/root/.dotnet/tools/pwsh'` (the dotnet tool shim finds `dotnet`
 *   on sshd's default PATH).
 *
 * ## Can it run here?
 * - `requireTestNet()`: undefined when test nets can run, else the reason
 *   (and prints it). In CI (`process.env.CI`) always undefined, so tests run
 *   and fail with createTestNet's error instead of skipping:
 *       const noNet = requireTestNet();
 *       describe.skipIf(noNet)(`x${noNet ? ` (skipped: ${noNet})` : ''}`, ...)
 * - createTestNet throws TestNetUnavailableError (no root, a missing tool
 *   or /etc file, with the package to install), TestNetSpecError (bad spec),
 *   TestNetError (anything else; nothing is left behind).
 * - `sweepStaleTestNets()`: removes the leftovers of nets whose owner
 *   process is dead (a SIGKILLed test run). createTestNet runs it once per
 *   process. Nets of live owners are never touched.
 */
import { sweepStaleTestNets as sweepWith, type SweepResult } from './teardown.ts';
import { requireTools } from './tools.ts';

export { createTestNet, keyBlob, TestHost, TestNet, TestNetError } from './net.ts';
export type { HostAddress, HostExecOptions, HostExecResult, HostProcess, HostSpawnOptions, KeyPair, TestNetInfo } from './net.ts';
export { CTL, storyNet, TestNetSpecError } from './spec.ts';
export type { HostNameOf, HostSpec, NetPlan, TestNetSpec } from './spec.ts';
export { HostSshd } from './sshd.ts';
export { NETS_ROOT, readRecord } from './teardown.ts';
export type { NetRecord, SweepResult } from './teardown.ts';
export { preflight, requireTestNet, TestNetUnavailableError } from './tools.ts';

/** See the list above. Throws TestNetUnavailableError when this machine cannot run test nets. */
export function sweepStaleTestNets(): SweepResult {
  return sweepWith(requireTools());
}
