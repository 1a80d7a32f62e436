/**
 * runKeyMismatch (src/run/run.ts): a run whose journal names another
 * signing key than this agent's is refused with KEY_MISMATCH and a fix
 * that fits where this agent's key came from; the same key, or a run that
 * names none (the audit decides then), passes.
 */
import { describe, expect, it } from 'vitest';
import { runKeyMismatch } from '../../src/run/run.ts';
import { generateKeyPair, loadSigner } from '../../src/trust/keys.ts';

const signer = loadSigner({ env: 'K' }, { K: generateKeyPair().privateKeyPem });
const other = loadSigner({ env: 'K' }, { K: generateKeyPair().privateKeyPem });
const id = 'r-20260101-000000-abcd';

describe('runKeyMismatch', () => {
  it('passes the run\'s own key, and a run that names no key', () => {
    expect(runKeyMismatch({ signingKeyId: signer.keyId, host: 'agent-a' }, id, signer, { env: 'K' }, true, '')).toBeUndefined();
    expect(runKeyMismatch({ host: 'agent-a' }, id, signer, { env: 'K' }, true, '')).toBeUndefined();
  });
  it('names both keys and the runbook\'s key source when the runbook names one', () => {
    const e = runKeyMismatch({ signingKeyId: other.keyId, host: 'agent-a' }, id, signer, { env: 'RUBICON_SIGNING_KEY' }, true, ' (--state azblob://a/b/c)')!;
    expect(e.code).toBe('KEY_MISMATCH');
    expect(e.exitCode).toBe(3);
    expect(e.message).toContain(`run ${id} was started on agent-a and its journal names key ${other.keyId} as its signing key; this agent signs with key ${signer.keyId} (environment variable RUBICON_SIGNING_KEY, as the runbook says)`);
    expect(e.hint).toContain(`key id ${other.keyId}`);
    expect(e.hint).toContain('trust.signingKey names');
    expect(e.hint).toMatch(/\(--state azblob:\/\/a\/b\/c\)$/);
    expect(e.details).toEqual({ runId: id, runKeyId: other.keyId, agentKeyId: signer.keyId });
  });
  it('with this user\'s own key, says how to give every agent the same one', () => {
    const e = runKeyMismatch({ signingKeyId: other.keyId, host: 'agent-a' }, id, signer, { file: '/home/b/.config/rubicon/keys/signing.pem' }, false, '')!;
    expect(e.message).toContain('(file /home/b/.config/rubicon/keys/signing.pem, this user\'s own key: the runbook names none)');
    expect(e.hint).toContain('set trust.signingKey in the runbook');
    expect(e.hint).toContain('or continue the run on agent-a');
  });
});
