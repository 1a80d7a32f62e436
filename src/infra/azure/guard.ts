import type { Permit } from '../../core/types.ts';
import { checkPermit } from '../../gate/permit.ts';

/**
 * May the target's image change in this run? The one decision that stands
 * between a plain `pulumi up` and a rebuild that wipes the target.
 *
 * Pure and total: no clock, no I/O; the caller passes `now`.
 */

export interface ImageChangeInput {
  /** The target's name (config `rubicon:target.name`): the permit must be for this target. */
  target: string;
  /**
   * The image the target runs now (`publisher:offer:sku:version`), or
   * undefined when the target does not exist yet (first deployment).
   */
  currentImage: string | undefined;
  /** The image the program is about to declare (config `rubicon:target.image`). */
  plannedImage: string;
  /** Config `rubicon:permit`, written by `rubicon upgrade` when the gate passed. */
  permit: Permit | undefined;
  /**
   * Config `rubicon:proofSetHash`: the hash of the proofs the gate passed on,
   * written by `rubicon upgrade` from the run journal. A permit counts only
   * when it is bound to exactly this proof set; without it no permit counts.
   */
  proofSetHash: string | undefined;
  now: Date;
}

export interface ImageChangeDecision {
  /** The VM's `protect` option: true unless a valid permit for the planned image is present. */
  protect: boolean;
  /** False when the image would change without a valid permit: the program must refuse. */
  allowed: boolean;
  /** True when a current image is known and differs from the planned one. */
  changing: boolean;
  /** True when the permit is valid for the planned image, target and proof set right now. */
  permitValid: boolean;
  /** For a refusal: what is missing, in plain words. */
  message?: string;
  /** For a refusal: how to get what is missing. */
  fix?: string;
}

const WRITES =
  "it proves every backup on the proving ground, evaluates the gate and, when the gate passes, writes `rubicon:permit` and `rubicon:proofSetHash` into this stack's config; then run `pulumi up` again before the permit expires";
const HOW_TO_GET_ONE = `Run \`rubicon upgrade --runbook <file>\` for this target: ${WRITES}.`;

export function imageChangeDecision(input: ImageChangeInput): ImageChangeDecision {
  const changing = input.currentImage !== undefined && input.currentImage !== input.plannedImage;
  let permitValid = false;
  let reason = 'there is no permit (config `rubicon:permit` is not set)';
  let fix = HOW_TO_GET_ONE;
  if (input.permit !== undefined && input.proofSetHash === undefined) {
    reason = 'the permit is not bound to a proof set (config `rubicon:proofSetHash` is not set)';
  } else if (input.permit !== undefined) {
    const check = checkPermit(input.permit, {
      image: input.plannedImage,
      now: input.now,
      proofSetHash: input.proofSetHash,
      target: input.target,
    });
    if (check.valid) permitValid = true;
    else {
      reason = check.reason;
      fix = `${check.fix[0]!.toUpperCase()}${check.fix.slice(1)}: ${WRITES}.`;
    }
  }
  const allowed = !changing || permitValid;
  const decision: ImageChangeDecision = { protect: !permitValid, allowed, changing, permitValid };
  if (!allowed) {
    decision.message =
      `Refusing to rebuild target "${input.target}": its image would change from ${input.currentImage} to ${input.plannedImage}, ` +
      `which deletes and recreates the VM, but ${reason}.`;
    decision.fix = fix;
  }
  return decision;
}
