import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sshControlPath, type SshClientOptions } from '../../src/machines/ssh-client.ts';

/**
 * The ControlMaster socket is shared only by calls that would open the same
 * connection. After a rebuild the known_hosts file at the same path holds
 * the new server's key: a master still open to the old server must not be
 * reused for it (src/machines/ssh-client.ts).
 */
describe('sshControlPath', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-cp-'));
  const knownHostsFile = path.join(dir, 'known_hosts');
  const o: SshClientOptions = { host: '198.18.0.10', port: 22, user: 'rubicon', identityFile: path.join(dir, 'id'), knownHostsFile, connectTimeoutSeconds: 5 };

  it('is stable for the same settings and known_hosts content', () => {
    writeFileSync(knownHostsFile, '198.18.0.10 ssh-ed25519 AAAAold\n');
    expect(sshControlPath(o)).toBe(sshControlPath({ ...o }));
  });

  it('changes when the known_hosts file at the same path holds another key', () => {
    writeFileSync(knownHostsFile, '198.18.0.10 ssh-ed25519 AAAAold\n');
    const before = sshControlPath(o);
    writeFileSync(knownHostsFile, '198.18.0.10 ssh-ed25519 AAAAnew\n');
    expect(sshControlPath(o)).not.toBe(before);
  });

  it('changes with the user, the port and the host', () => {
    const base = sshControlPath(o);
    expect(sshControlPath({ ...o, user: 'other' })).not.toBe(base);
    expect(sshControlPath({ ...o, port: 2222 })).not.toBe(base);
    expect(sshControlPath({ ...o, host: '198.18.0.11' })).not.toBe(base);
  });
});
