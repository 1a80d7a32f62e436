import fc from 'fast-check';

/**
 * The seed of every property test in the repository: RUBICON_SEED from the
 * environment, or a fixed default, so a run (CI included) is reproducible
 * and a failure can be replayed. Try other seeds with
 * `RUBICON_SEED=$RANDOM npx vitest run`.
 */
export const DEFAULT_SEED = 20261128;

export function seedFrom(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.RUBICON_SEED;
  if (v === undefined || v.trim() === '') return DEFAULT_SEED;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`RUBICON_SEED must be an integer, got "${v}"`);
  return n | 0; // fast-check seeds are 32-bit
}

export const SEED = seedFrom();

/** fast-check parameters with the seed (and anything else the caller sets; the seed cannot be overridden). */
export function seeded<T>(params: fc.Parameters<T> = {}): fc.Parameters<T> {
  return { ...params, seed: SEED };
}

function withSeed(e: unknown): never {
  if (e instanceof Error) e.message = `${e.message}\n(property tests ran with seed ${SEED}: replay with RUBICON_SEED=${SEED})`;
  throw e;
}

/** fc.assert with the seed; a failure says which seed reproduces it. */
export function assertProperty<T>(property: fc.IAsyncProperty<T>, params?: fc.Parameters<T>): Promise<void>;
export function assertProperty<T>(property: fc.IProperty<T>, params?: fc.Parameters<T>): void;
export function assertProperty<T>(property: fc.IRawProperty<T>, params?: fc.Parameters<T>): Promise<void> | void {
  let r: Promise<void> | void;
  try {
    r = fc.assert(property, seeded(params));
  } catch (e) {
    withSeed(e);
  }
  return r instanceof Promise ? r.catch(withSeed) : r;
}
