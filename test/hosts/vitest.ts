/**
 * vitest glue for test nets (kept apart from ./index.ts so Node child
 * processes can use the harness without vitest).
 */
import { afterAll, beforeAll } from 'vitest';
import { createTestNet, type TestNet } from './net.ts';
import type { HostNameOf, TestNetSpec } from './spec.ts';

/**
 * Creates a net in beforeAll and destroys it in afterAll of the enclosing
 * describe (or file). Returns a getter: call it inside tests.
 *
 *     const net = useTestNet(storyNet());
 *     it('...', async () => { await net().ssh('ctl', 'target', 'true'); });
 */
export function useTestNet<const S extends TestNetSpec>(spec: S): () => TestNet<HostNameOf<S>> {
  let net: TestNet<HostNameOf<S>> | undefined;
  beforeAll(async () => {
    net = await createTestNet(spec);
  });
  afterAll(async () => {
    await net?.destroy();
  });
  return () => {
    if (!net) throw new Error('the test net is not up: useTestNet() creates it in beforeAll (did creation fail? see the beforeAll error)');
    return net;
  };
}
