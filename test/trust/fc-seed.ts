/**
 * The trust tests' import of the repository's one property-test seed
 * (test/support/seed.ts: RUBICON_SEED, a fixed default, the replay command
 * in a failure).
 */
export { assertProperty, SEED as FC_SEED } from '../support/seed.ts';
