import type { Machine } from '../../machines/machine.ts';

/**
 * The target machine the composition root selected (the runbook's
 * `target.transport`), made usable under the VM's ARM `CanNotDelete` lock.
 *
 * Why: a lock on a VM is inherited by its child resources. The
 * azure-run-command transport creates a run command (a child resource of
 * the VM) per step and deletes it afterwards; under the lock that DELETE is
 * refused (409 ScopeLocked), so every step would leave a run command behind
 * and the transport's cleanup would fail. The driver's own Run Command host
 * (driver.ts `#targetHost`) lifts the lock around each command for the same
 * reason; this does it for the machine the phases (capture, freeze,
 * landing) use.
 *
 * Contract:
 * - Only a machine whose transport is `azure-run-command` is wrapped; any
 *   other machine (local, ssh, openssh-windows: no child resources) is
 *   returned as it is, the same object.
 * - Every method but `close` and `platformIdentity` (a GET of the VM,
 *   which creates no child resource) runs inside a "lifted" section: the first
 *   operation to enter lifts the VM's lock, the last to leave restores it
 *   (reference-counted, so parallel steps share one lift); lifts and
 *   restores are serialised. The data and OS disks keep their locks
 *   throughout; the delete-guard hook still refuses any unpermitted delete.
 * - A lift that fails fails the operation before it runs. A restore that
 *   fails fails the operation (never only a warning): the caller sees the
 *   error and the run stops; the driver's next entry point locks again.
 * - The wrapper keeps the machine's identity for `instanceof` and `in`
 *   checks (a Proxy), and calls the real methods with the real object as
 *   `this` (private fields work).
 *
 * Known cost: while a Run Command step runs, the VM itself is not locked
 * (minutes, one step at a time). Narrower would be lifting it only for the
 * transport's DELETE of its run command; that needs a hook in the
 * transport (src/machines/windows/run-command.ts), not built yet.
 */

export interface LockSection {
  /** Removes the VM's lock. Idempotent. */
  lift(): Promise<void>;
  /** Puts it back. Idempotent. */
  restore(): Promise<void>;
}

export function lockLiftingMachine<M extends Machine>(machine: M, lock: LockSection): M {
  if (machine.transport !== 'azure-run-command') return machine;
  let active = 0;
  let chain: Promise<unknown> = Promise.resolve();
  const serial = (f: () => Promise<void>): Promise<void> => {
    const next = chain.then(f);
    chain = next.catch(() => undefined);
    return next;
  };
  const around = async <T>(f: () => Promise<T>): Promise<T> => {
    await serial(async () => {
      if (active === 0) await lock.lift();
      active++;
    });
    try {
      return await f();
    } finally {
      await serial(async () => {
        active--;
        if (active === 0) await lock.restore();
      });
    }
  };
  return new Proxy(machine, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop);
      if (typeof value !== 'function' || prop === 'constructor') return value;
      // Not lifted, but still called on the real object (a Proxy as `this` cannot reach private fields).
      if (prop === 'close' || prop === 'platformIdentity') return (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => around(() => Promise.resolve((value as (...a: unknown[]) => unknown).apply(target, args)));
    },
  });
}
