import { createHash } from 'node:crypto';
import { RubiconError } from '../core/errors.ts';
import type { GateResult, Permit, Proof } from '../core/types.ts';
import { parseIsoTime as time } from './current.ts';

/**
 * The permit: what a passing gate issues, and what the Pulumi program checks
 * before it lets an image change through. Dependency-free (node:crypto, our own
 * error type and time parser only) so the Pulumi program can import it.
 *
 * Contract: issuePermit is pure apart from hashing (same input → same permit)
 * and refuses unless the gate passed; checkPermit is pure and never throws.
 */

export const DEFAULT_PERMIT_MINUTES = 120;

const FIX = 'run `rubicon upgrade --runbook <file>` again: it re-evaluates the gate and issues a fresh permit';

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * SHA-256 (hex) over the sorted `id:outcome` lines of the proofs, joined by
 * "\n". Order-independent; changes when any proof is added, removed or
 * changes outcome.
 */
export function proofSetHash(proofs: readonly Pick<Proof, 'id' | 'outcome'>[]): string {
  const lines = proofs.map((p) => `${p.id}:${p.outcome}`).sort();
  return sha256(lines.join('\n'));
}

export interface IssuePermitInput {
  runId: string;
  target: string;
  /** The image the crossing installs. */
  image: string;
  gate: GateResult;
  /** The proofs the gate relied on; the permit binds to exactly these (ids and outcomes). */
  proofs: Proof[];
  now: Date;
  /** Default 120. */
  validForMinutes?: number;
  /**
   * When given, the permit also expires when the oldest of `proofs` reaches
   * this age (the policy's maxProofAgeHours), so a permit never outlives its
   * evidence.
   */
  maxProofAgeHours?: number;
  /** Default: derived from runId, target, image, proof set and time (stable across a resume). */
  id?: string;
}

/**
 * Issues a permit for a passing gate. Throws RubiconError('GATE_REFUSED')
 * unless the gate passed — and the `passed` flag is not taken on its own: a
 * result with no rule results, or with any 'fail' among them, is refused too.
 */
export function issuePermit(input: IssuePermitInput): Permit {
  const { gate } = input;
  const fails = Array.isArray(gate?.results) ? gate.results.filter((r) => r.status === 'fail') : [];
  if (!gate || gate.passed !== true || !Array.isArray(gate.results) || gate.results.length === 0 || fails.length > 0) {
    const why = fails.length ? fails.map((r) => r.reason) : (gate?.reasons ?? []);
    throw new RubiconError(
      'GATE_REFUSED',
      `the gate did not pass, so no permit is issued for ${input.target}${why.length ? `: ${why.join('; ')}` : ''}`,
      { hint: 'fix what the gate lists (or record an override with a reason in the runbook) and run `rubicon upgrade --runbook <file>` again' },
    );
  }
  const now = input.now.getTime();
  const minutes = input.validForMinutes ?? DEFAULT_PERMIT_MINUTES;
  if (!Number.isFinite(now) || !(Number.isFinite(minutes) && minutes > 0)) {
    throw new RubiconError(
      'INTERNAL',
      `cannot issue a permit for ${input.target}: now (${String(input.now)}) and validForMinutes (${minutes}) must be a valid time and a positive number`,
    );
  }
  let expires = now + minutes * 60_000;
  if (input.maxProofAgeHours !== undefined) {
    for (const p of input.proofs) {
      const finished = time(p.finishedAt);
      if (Number.isNaN(finished)) {
        throw new RubiconError('GATE_REFUSED', `proof ${p.id} has no valid finish time ("${p.finishedAt}"); no permit is issued`);
      }
      expires = Math.min(expires, finished + input.maxProofAgeHours * 3_600_000);
    }
    if (!(expires > now)) {
      throw new RubiconError('GATE_REFUSED', `the proofs for ${input.target} are already older than ${input.maxProofAgeHours} h; no permit is issued`, {
        hint: 'prove the artifacts again, then run `rubicon upgrade --runbook <file>`',
      });
    }
  }
  const hash = proofSetHash(input.proofs);
  const issuedAt = new Date(now).toISOString();
  return {
    id: input.id ?? `permit.${input.runId}.${sha256([input.runId, input.target, input.image, hash, issuedAt].join('\n')).slice(0, 16)}`,
    runId: input.runId,
    target: input.target,
    image: input.image,
    proofIds: input.proofs.map((p) => p.id).sort(),
    proofSetHash: hash,
    issuedAt,
    expiresAt: new Date(expires).toISOString(),
  };
}

export type PermitCheck = { valid: true } | { valid: false; reason: string; fix: string };

/**
 * Checks a permit against what is about to happen. Pure; never throws.
 * Invalid when: missing; its times are unreadable, not yet valid, or expired
 * (expiry is exclusive); the image, proof set hash or target differ from
 * what is expected (the last two only when given).
 */
export function checkPermit(
  permit: Permit | undefined,
  expect: { image: string; now: Date; proofSetHash?: string; target?: string },
): PermitCheck {
  if (!permit || typeof permit !== 'object') {
    return { valid: false, reason: 'no permit: the gate has not passed for this crossing', fix: FIX };
  }
  const now = expect.now.getTime();
  const issued = time(permit.issuedAt);
  const expires = time(permit.expiresAt);
  if (!Number.isFinite(now) || Number.isNaN(issued) || Number.isNaN(expires)) {
    return { valid: false, reason: `permit ${permit.id} has unreadable times (issued "${permit.issuedAt}", expires "${permit.expiresAt}")`, fix: FIX };
  }
  if (now < issued) {
    return { valid: false, reason: `permit ${permit.id} is not valid before ${permit.issuedAt}; check the clock`, fix: FIX };
  }
  if (!(now < expires)) {
    return { valid: false, reason: `permit ${permit.id} expired at ${permit.expiresAt}`, fix: FIX };
  }
  if (permit.image !== expect.image) {
    return {
      valid: false,
      reason: `permit ${permit.id} is for image ${permit.image}, but the crossing would install ${expect.image}`,
      fix: `${FIX} with the image you mean to install`,
    };
  }
  if (expect.proofSetHash !== undefined && permit.proofSetHash !== expect.proofSetHash) {
    return {
      valid: false,
      reason: `permit ${permit.id} was issued for a different set of proofs (${permit.proofSetHash.slice(0, 12)} ≠ ${expect.proofSetHash.slice(0, 12)})`,
      fix: FIX,
    };
  }
  if (expect.target !== undefined && permit.target !== expect.target) {
    return { valid: false, reason: `permit ${permit.id} is for target ${permit.target}, not ${expect.target}`, fix: FIX };
  }
  return { valid: true };
}
