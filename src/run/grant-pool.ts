import type { JournalEvent } from '../core/events.ts';
import { isRubiconError } from '../core/errors.ts';
import type { RunState } from '../core/state.ts';
import type { Machine } from '../machines/machine.ts';
import type { Grant, ToolVault } from '../vaults/vault.ts';

/**
 * Grants for a phase: one grant per (vault, machine, mode), reused by every
 * artifact of the phase, instead of one per artifact (a grant costs a key
 * pair, files on the machine and two edits of the vault host's
 * authorized_keys).
 *
 * Guarantees (the same a per-artifact grant gave, per phase):
 * - Time-limited: a grant is handed out again only while it has at least
 *   `minLeftMs` (default 5 h of its 6 h) left, so a tool run started with it
 *   always has at least that long; otherwise a fresh one is issued.
 * - Revoked at the end of the phase (`release`, on `phase.completed`), and
 *   on every other way out of a run: a failure or an interrupt reaches
 *   `close()` (the run's last act) which revokes whatever is held. A grant
 *   being revoked is never handed out again (it leaves the pool at once).
 * - Journaled: `grant.issued` is recorded BEFORE the grant's key is added to
 *   the vault host (after its files are on the machine), `grant.revoked`
 *   after the key is gone. A process killed with -9 leaves journaled grants:
 *   the next process of the run (resume, confirm) revokes them before it
 *   issues any (`cleanupLeftovers`), and when it cannot (the machine is gone,
 *   the vault host unreachable) it notes when the key expires by itself
 *   (sshd's expiry-time).
 * - Never holds a secret: grants are plain data (paths).
 */
export interface GrantPoolDeps {
  record: (e: JournalEvent) => void;
  state: () => RunState;
  now: () => Date;
  /** The run's tool vaults, to revoke leftover grants by vault name. */
  vaults: () => ToolVault[];
  /** The machine a journaled grant was given to, as this process reaches it now (undefined: unknown or gone). */
  machineNamed: (name: string) => Machine | undefined;
  ttlMs?: number;
  minLeftMs?: number;
}

interface Held {
  grant: Grant;
  vault: ToolVault;
  machine: Machine;
}

export const GRANT_TTL_MS = 6 * 3600_000;
const MIN_LEFT_MS = 5 * 3600_000;

export class GrantPool {
  private readonly d: GrantPoolDeps;
  private readonly held = new Map<string, Held>();
  /** Grants superseded (renewed) in this phase: revoked with the others at release. */
  private readonly retired: Held[] = [];
  private readonly issuedHere = new Set<string>();
  private pending: Promise<void>[] = [];
  private leftovers: Promise<void> | undefined;
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;

  constructor(d: GrantPoolDeps) {
    this.d = d;
  }

  private idOf(o: object): number {
    let n = this.ids.get(o);
    if (n === undefined) {
      n = this.nextId++;
      this.ids.set(o, n);
    }
    return n;
  }

  private key(vault: ToolVault, machine: Machine, mode: 'read' | 'write', withoutSecret: boolean): string {
    return `${this.idOf(vault)}/${this.idOf(machine)}/${mode}${withoutSecret ? '/no-secret' : ''}`;
  }

  /**
   * A live grant of `vault` for `machine` in `mode`: the phase's own, or a
   * new one. `withoutSecret`: a grant that does not carry the vault's own
   * secret (GrantOptions.withoutSecret), pooled apart from one that does.
   */
  async acquire(vault: ToolVault, machine: Machine, mode: 'read' | 'write', o: { withoutSecret?: boolean } = {}): Promise<Grant> {
    await this.cleanupLeftovers();
    const k = this.key(vault, machine, mode, o.withoutSecret === true);
    const h = this.held.get(k);
    const now = this.d.now().getTime();
    if (h && Date.parse(h.grant.expiresAt) - now >= (this.d.minLeftMs ?? MIN_LEFT_MS)) return h.grant;
    if (h) {
      this.held.delete(k);
      this.retired.push(h);
    }
    let journaled: string | undefined;
    try {
      const grant = await vault.grant(machine, mode, this.d.ttlMs ?? GRANT_TTL_MS, {
        ...(o.withoutSecret ? { withoutSecret: true } : {}),
        beforeKey: (g) => {
          journaled = g.id;
          this.issuedHere.add(g.id);
          this.d.record({ type: 'grant.issued', grant: { id: g.id, vault: vault.info.name, machine: machine.name, mode, expiresAt: g.expiresAt, dir: g.dir } });
        },
      });
      this.held.set(k, { grant, vault, machine });
      return grant;
    } catch (e) {
      // issueGrant removes the grant's files when adding its key failed: nothing of it is left.
      if (journaled) this.d.record({ type: 'grant.revoked', grantIds: [journaled] });
      throw e;
    }
  }

  /** Revokes every grant the pool holds (the end of a phase). The pool can be used again at once; revocation runs on. */
  release(): void {
    const all = [...this.held.values(), ...this.retired.splice(0)];
    this.held.clear();
    if (all.length === 0) return;
    this.pending.push(Promise.all(all.map((h) => this.revoke(h))).then(() => undefined));
  }

  private async revoke(h: Held): Promise<void> {
    try {
      await h.vault.revoke(h.grant, h.machine);
      this.d.record({ type: 'grant.revoked', grantIds: [h.grant.id] });
    } catch (e) {
      this.d.record({
        type: 'note',
        level: 'warn',
        message: `grant ${h.grant.id} of vault ${h.vault.info.name} for ${h.machine.name} could not be revoked (${isRubiconError(e) ? e.code : 'INTERNAL'}); its key expires by itself at ${h.grant.expiresAt}`,
      });
    }
  }

  /**
   * Revokes the grants an earlier process of this run left (journaled as
   * issued, never as revoked). Once per pool; never throws: what cannot be
   * revoked is noted with the time its key expires.
   */
  cleanupLeftovers(): Promise<void> {
    this.leftovers ??= (async () => {
      const grants = this.d.state().grants ?? {};
      const left = Object.entries(grants).filter(([id, g]) => !g.revoked && !this.issuedHere.has(id));
      for (const [id, g] of left) {
        const vault = this.d.vaults().find((v) => v.info.name === g.vault);
        const expired = Date.parse(g.expiresAt) <= this.d.now().getTime();
        if (g.holder === 'sql-server-credential') {
          // A SAS SQL Server held as a credential (mssql-native-url): this process has no session to that server; say what to drop.
          this.d.record({ type: 'note', level: 'warn', message: `grant ${id} of vault ${g.vault} (a SAS held by ${g.machine} as credential ${g.dir}), left by an earlier process of this run: drop that credential by hand if it is still there (DROP CREDENTIAL); its SAS ${expired ? 'has expired' : `lapses by itself at ${g.expiresAt}`}` });
          continue;
        }
        if (!vault) {
          this.d.record({ type: 'note', level: 'warn', message: `grant ${id} of vault ${g.vault} for ${g.machine}, left by an earlier process of this run, cannot be revoked (the vault is no longer in the runbook); its key ${expired ? 'has expired' : `expires by itself at ${g.expiresAt}`}` });
          continue;
        }
        const machine = this.d.machineNamed(g.machine);
        const grant: Grant = { id, vault: g.vault, machine: g.machine, mode: g.mode, expiresAt: g.expiresAt, dir: g.dir, sshCommand: '', env: {}, location: '' };
        try {
          await vault.revoke(grant, machine);
          this.d.record({ type: 'grant.revoked', grantIds: [id] });
        } catch (e) {
          const code = isRubiconError(e) ? e.code : 'INTERNAL';
          // GRANT_FAILED without a machine: the key is gone, the folder (on a machine this process cannot reach) is not.
          if (!machine && code === 'GRANT_FAILED') {
            this.d.record({ type: 'grant.revoked', grantIds: [id], folderLeft: true });
            this.d.record({ type: 'note', level: 'warn', message: `grant ${id} of vault ${g.vault}, left by an earlier process of this run, is revoked; its folder ${g.dir} on ${g.machine} could not be removed (the machine is not reachable from this process)` });
          } else {
            this.d.record({ type: 'note', level: 'warn', message: `grant ${id} of vault ${g.vault} for ${g.machine}, left by an earlier process of this run, could not be revoked (${code}); its key ${expired ? 'has expired' : `expires by itself at ${g.expiresAt}`}` });
          }
        }
      }
    })();
    return this.leftovers;
  }

  /** Revokes everything still held and waits for every revocation (the run's last act, on every path out). */
  async close(): Promise<void> {
    await this.cleanupLeftovers();
    this.release();
    while (this.pending.length > 0) await Promise.all(this.pending.splice(0));
  }
}
