import { RubiconError } from '../../core/errors.ts';
import { verifierFrom } from '../../trust/keys.ts';
import { verifySignedPermit } from '../../trust/permit.ts';

/**
 * May this deployment replace or delete the target? The decision that stands
 * between a plain `pulumi up` and a rebuild that wipes the target.
 *
 * Pure and total: no clock, no I/O; the caller passes what Azure says about
 * the VM now (./current.ts) and `now`.
 *
 * Rules:
 * - The target's current state must be known. A VM that exists but whose
 *   image cannot be read as `publisher:offer:sku:version` (built from a
 *   gallery image, a managed image or an attached disk) is a refusal, not a
 *   first deployment. Only a VM Azure reports as not found (./current.ts
 *   decides that narrowly) is "absent": creating it destroys nothing.
 * - A change of location or zone replaces the VM and cannot take its data
 *   disks along: always refused (Rubicon never moves a target).
 * - An image change needs a valid SIGNED permit (src/trust/permit.ts):
 *   signed with the key `rubicon:permitPublicKey` names, for exactly this
 *   image and target, unexpired, bound to `rubicon:proofSetHash`.
 * - `deleteAllowed` (read by the delete hooks, ./hooks.ts) is true only with
 *   such a permit: any planned delete or replace of the VM, whatever its
 *   cause (a rename, a path parameter, `--ignore-protect`), is refused at
 *   the engine without one. Disks are never deletable by a plan.
 */

/** What Azure says about the target VM right now. */
export type CurrentTarget =
  | { state: 'absent' }
  | {
      state: 'present';
      /** `publisher:offer:sku:version`, or undefined when the VM was not built from a marketplace image reference. */
      image: string | undefined;
      /** Plain words: where the VM's OS came from (for messages). */
      imageSource: string;
      /** As Azure reports it (`westeurope`). */
      location: string;
      /** Availability zone, when zonal. */
      zone?: string;
    };

export interface GuardInput {
  /** The target's name (config `rubicon:target.name`): the permit must be for this target. */
  target: string;
  current: CurrentTarget;
  planned: { image: string; location: string; zone?: string };
  /** Config `rubicon:permit`: a signed permit, written by `rubicon upgrade` when the gate passed. Unverified here. */
  permit: unknown;
  /** Config `rubicon:permitPublicKey`: the only key permits may be signed with. */
  publicKeyPem: string | undefined;
  /** Config `rubicon:proofSetHash`: the proof set the permit must be bound to. */
  proofSetHash: string | undefined;
  now: Date;
}

export interface GuardDecision {
  /** The VM's `protect` option: true unless a valid permit is present. */
  protect: boolean;
  /** False when the program must refuse to run (nothing is declared). */
  allowed: boolean;
  /** True when a current image is known and differs from the planned one. */
  changing: boolean;
  /** True when the signed permit is valid for the planned image, target and proof set right now. */
  permitValid: boolean;
  /** What the delete hooks allow: a delete/replace of the VM only with a valid permit; disks never. */
  deleteAllowed: boolean;
  /** For a refusal: what is wrong, in plain words. */
  message?: string;
  /** For a refusal: how to fix it. */
  fix?: string;
}

/** @deprecated name kept for callers of the first version. */
export type ImageChangeDecision = GuardDecision;

const WRITES =
  "it proves every backup on the proving ground, evaluates the gate and, when the gate passes, writes a signed `rubicon:permit` and `rubicon:proofSetHash` into this stack's config and runs the crossing";
const HOW_TO_GET_ONE = `Run \`rubicon upgrade --runbook <file>\` for this target: ${WRITES}.`;

function normLocation(l: string): string {
  return l.replace(/\s+/g, '').toLowerCase();
}

function permitCheck(input: GuardInput): { valid: boolean; reason: string; fix: string } {
  if (input.permit === undefined) return { valid: false, reason: 'there is no permit (config `rubicon:permit` is not set)', fix: HOW_TO_GET_ONE };
  if (input.publicKeyPem === undefined) {
    return {
      valid: false,
      reason: 'no key is trusted to sign permits (config `rubicon:permitPublicKey` is not set), so no permit counts',
      fix: 'Put the public key of Rubicon\'s signing key in stacks/Pulumi.<stack>.yaml as rubicon:permitPublicKey (docs/trust.md), then run `rubicon upgrade` again.',
    };
  }
  if (input.proofSetHash === undefined) {
    return { valid: false, reason: 'the permit is not bound to a proof set (config `rubicon:proofSetHash` is not set)', fix: HOW_TO_GET_ONE };
  }
  let verifier;
  try {
    verifier = verifierFrom(input.publicKeyPem);
  } catch (e) {
    return { valid: false, reason: `config \`rubicon:permitPublicKey\` is unusable: ${e instanceof RubiconError ? e.message : String(e)}`, fix: 'Fix rubicon:permitPublicKey (docs/trust.md).' };
  }
  const r = verifySignedPermit(input.permit, verifier, { image: input.planned.image, target: input.target, now: input.now, proofSetHash: input.proofSetHash });
  if (r.valid) return { valid: true, reason: '', fix: '' };
  return { valid: false, reason: r.reason, fix: `${r.fix[0]!.toUpperCase()}${r.fix.slice(1)}: ${WRITES}.` };
}

export function targetDecision(input: GuardInput): GuardDecision {
  const p = permitCheck(input);
  const permitValid = p.valid;
  const base = { protect: !permitValid, permitValid, deleteAllowed: permitValid };
  const refuse = (changing: boolean, message: string, fix: string): GuardDecision => ({ ...base, allowed: false, changing, message, fix });
  const c = input.current;
  if (c.state === 'absent') return { ...base, allowed: true, changing: false };

  if (c.image === undefined) {
    return refuse(
      false,
      `Refusing to deploy target "${input.target}": the VM exists but its current image is unknown (${c.imageSource}), ` +
        `so Rubicon cannot tell whether ${input.planned.image} would rebuild it.`,
      'Rubicon rebuilds only VMs built from a marketplace image reference (publisher:offer:sku:version). ' +
        'Check rubicon:target.name and rubicon:resourceGroupName point at the right VM; to adopt this one, rebuild it by hand first (docs/infra.md, "Adopting an existing server").',
    );
  }
  if (normLocation(c.location) !== normLocation(input.planned.location)) {
    return refuse(
      false,
      `Refusing to deploy target "${input.target}": it runs in ${c.location}, but rubicon:location is ${input.planned.location}; ` +
        'a location change deletes and recreates the VM and cannot take its data disks along.',
      `Set rubicon:location back to ${c.location}. Rubicon never moves a target; move it with Azure Resource Mover and adopt it again.`,
    );
  }
  if ((c.zone ?? '') !== (input.planned.zone ?? '')) {
    return refuse(
      false,
      `Refusing to deploy target "${input.target}": it runs in zone ${c.zone ?? '(none, regional)'}, but rubicon:target.zone is ${input.planned.zone ?? '(not set)'}; ` +
        'a zone change deletes and recreates the VM.',
      c.zone ? `Set rubicon:target.zone to "${c.zone}".` : 'Remove rubicon:target.zone.',
    );
  }
  const changing = c.image !== input.planned.image;
  if (changing && !permitValid) {
    return refuse(
      true,
      `Refusing to rebuild target "${input.target}": its image would change from ${c.image} to ${input.planned.image}, ` +
        `which deletes and recreates the VM, but ${p.reason}.`,
      p.fix,
    );
  }
  return { ...base, allowed: true, changing };
}

/**
 * What the delete hook of one resource says. Pure. The VM may be deleted
 * (a replace is a delete first: `deleteBeforeReplace`) only when the
 * decision allows it; a disk never.
 */
export function deleteVerdict(decision: GuardDecision, target: string, resource: { type: string; name: string }): { ok: true } | { ok: false; message: string } {
  const isVm = resource.type === 'azure-native:compute:VirtualMachine';
  if (isVm && decision.deleteAllowed) return { ok: true };
  const what = isVm ? `the VM of target "${target}"` : `disk ${resource.name} of target "${target}"`;
  const why = isVm
    ? 'there is no valid signed permit for this deployment'
    : 'a disk holds the data and Rubicon never lets a plan delete or replace one';
  return {
    ok: false,
    message:
      `Rubicon refuses to delete ${what} (${resource.name}): ${why}. This is a delete or a replace the plan contains ` +
      '(a changed name, resource group or location, `--ignore-protect`, a removed resource). Nothing was deleted by this step. ' +
      'Run `pulumi preview --diff` to see why it is planned, and undo that change; a real rebuild goes through `rubicon upgrade`.',
  };
}
