import fc from 'fast-check';

/**
 * Property runs seeded from the environment: FC_SEED=<int> replays a run.
 * Without it a fresh seed is drawn; either way a failure names the seed
 * (fast-check's own report includes `seed` and `path`; this adds the
 * replay command in front of it).
 */
export const FC_SEED = process.env['FC_SEED'] !== undefined ? Number(process.env['FC_SEED']) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;

export function assertProperty<Ts extends [unknown, ...unknown[]]>(property: fc.IPropertyWithHooks<Ts> | fc.IProperty<Ts>, params: fc.Parameters<Ts> = {}): void {
  try {
    fc.assert(property as fc.IProperty<Ts>, { seed: FC_SEED, ...params });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(`property failed with FC_SEED=${FC_SEED} (replay: FC_SEED=${FC_SEED} npx vitest run <this file>)\n${message}`, { cause: e });
  }
}
