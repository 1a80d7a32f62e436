import { readIdentity } from '../machines/identity.ts';
import { restoreServices, serviceState, stopServices } from '../machines/services.ts';
import type { TargetPlane } from './plane.ts';
import { captureFolderRemote, discoverRemote, driftRemote, landItemRemote } from './remote.ts';

/**
 * The target plane of a Linux server over ssh: find, sha256sum and
 * systemctl on the machine (src/run/remote.ts, src/machines/tree.ts,
 * src/machines/services.ts), /etc/machine-id and os-release for its identity.
 */
export const posixPlane: TargetPlane = {
  os: 'linux',
  coverage: true,
  everything: true,
  identify: (_ctx, machine) => readIdentity(machine),
  discover: discoverRemote,
  captureFolder: captureFolderRemote,
  drift: driftRemote,
  landItem: landItemRemote,
  async freeze(ctx, units) {
    // Recorded before they are touched, so a thaw after a crash restores exactly what was found.
    const before = ctx.state().stoppedServices ?? (await Promise.all(units.map((u) => serviceState(ctx.target, u))));
    if (!ctx.state().stoppedServices) ctx.record({ type: 'services.stopped', services: before });
    await stopServices(ctx.target, units);
  },
  async thaw(ctx) {
    const stopped = ctx.state().stoppedServices;
    if (stopped && stopped.length > 0) await restoreServices(ctx.target, stopped);
  },
};
