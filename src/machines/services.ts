import { RubiconError } from '../core/errors.ts';
import type { Machine } from './machine.ts';

/**
 * Freeze and thaw on a Linux target with systemd: stop the application's
 * units and restore exactly the state they were found in. `systemctl show
 * --property=ActiveState,UnitFileState <unit>` prints `Key=value` lines
 * (systemd's documented output of `show`); that is what is parsed.
 *
 * Contracts:
 * - stopServices records every unit's state before touching any, stops
 *   them in the given order, and checks each one really is inactive
 *   afterwards: a unit that will not stop fails the freeze with its name.
 *   Idempotent (a unit already stopped stays stopped and keeps its
 *   recorded prior state through the journal, not through this call).
 * - restoreServices starts, in reverse order, exactly the units that were
 *   active before; it never starts one that was not. Idempotent.
 */
export interface ServiceState {
  name: string;
  /** ActiveState before the freeze: active, inactive, failed, ... */
  active: string;
  /** UnitFileState: enabled, disabled, static, masked, ... */
  enabled: string;
}

export async function serviceState(machine: Machine, unit: string): Promise<ServiceState> {
  const r = await machine.exec({ argv: ['systemctl', 'show', '--property=ActiveState,UnitFileState,LoadState', '--', unit] });
  if (r.exitCode !== 0) {
    throw new RubiconError('PRECONDITION_FAILED', `systemctl cannot show ${unit} on ${machine.name}: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.exitCode}`}`, {
      hint: `check the unit name in target.services (systemctl list-units on ${machine.name})`,
    });
  }
  const kv = Object.fromEntries(
    r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  if (kv.LoadState === 'not-found') {
    throw new RubiconError('PRECONDITION_FAILED', `service ${unit} does not exist on ${machine.name}`, { hint: 'fix target.services in the runbook' });
  }
  return { name: unit, active: kv.ActiveState ?? 'unknown', enabled: kv.UnitFileState ?? 'unknown' };
}

export async function stopServices(machine: Machine, units: readonly string[], o: { timeoutMs?: number } = {}): Promise<ServiceState[]> {
  const before: ServiceState[] = [];
  for (const u of units) before.push(await serviceState(machine, u));
  for (const u of units) {
    const r = await machine.exec({ argv: ['systemctl', 'stop', '--', u] }, { timeoutMs: o.timeoutMs ?? 300_000 });
    const after = await serviceState(machine, u);
    if (r.exitCode !== 0 || (after.active !== 'inactive' && after.active !== 'failed')) {
      throw new RubiconError('PRECONDITION_FAILED', `service ${u} on ${machine.name} did not stop (now ${after.active}): the freeze failed`, {
        hint: `stop ${u} by hand on ${machine.name} (systemctl stop ${u}; journalctl -u ${u}), then resume the run`,
      });
    }
  }
  return before;
}

export async function restoreServices(machine: Machine, recorded: readonly ServiceState[]): Promise<void> {
  for (const s of [...recorded].reverse()) {
    if (s.active !== 'active' && s.active !== 'activating' && s.active !== 'reloading') continue;
    const r = await machine.exec({ argv: ['systemctl', 'start', '--', s.name] }, { timeoutMs: 300_000 });
    if (r.exitCode !== 0) {
      throw new RubiconError('PRECONDITION_FAILED', `service ${s.name} on ${machine.name} did not start again at thaw: ${r.stderr.trim().split('\n')[0] ?? ''}`, {
        hint: `start it by hand: systemctl start ${s.name}`,
      });
    }
  }
}
