import type { DatabaseEngine } from '../engine.ts';
import type { MssqlEngineOptions } from './engine.ts';
import { landingOrder } from './landing.ts';
import { MSSQL_METHODS } from './methods.ts';

/**
 * The mssql engine, loaded on first use: the SQL Server driver (mssql,
 * tedious) costs ~200 ms to import, which a run without an engines.mssql
 * section, or a `plan` that fails before discovery, should not pay.
 * Behaves exactly like createMssqlEngine(options); `kind` and `methods` are
 * available without loading anything.
 */
export function lazyMssqlEngine(options: MssqlEngineOptions): DatabaseEngine {
  let engine: Promise<DatabaseEngine> | undefined;
  const get = (): Promise<DatabaseEngine> => (engine ??= import('./engine.ts').then((m) => m.createMssqlEngine(options)));
  return {
    kind: 'mssql',
    methods: MSSQL_METHODS,
    overNetwork: true,
    discover: async (ctx, o) => (await get()).discover(ctx, o),
    fingerprint: async (ctx, item) => (await get()).fingerprint(ctx, item),
    capture: async (ctx, item, method, o) => (await get()).capture(ctx, item, method, o),
    prove: async (ctx, artifact, manifest, files) => (await get()).prove(ctx, artifact, manifest, files),
    drift: async (ctx, item, manifest, files) => (await get()).drift!(ctx, item, manifest, files),
    restore: async (ctx, item, manifest, files) => (await get()).restore(ctx, item, manifest, files),
    preflight: async (ctx, items) => (await get()).preflight!(ctx, items),
    landingOrder,
    validateLanding: async (ctx, item, manifest, files) => (await get()).validateLanding!(ctx, item, manifest, files),
  };
}
