import type {
  Artifact,
  Copy,
  Drift,
  GateResult,
  Item,
  LandingPreflight,
  ManualStep,
  Override,
  Permit,
  Phase,
  Policy,
  Proof,
  RollbackPoint,
  ScopeOfDestruction,
  CoverageMap,
  VaultInfo,
} from './types.ts';

/**
 * Journal events: the facts of a run, appended in order, hash-chained and
 * fsync'd (src/run/journal.ts). The run state, the checklist, the gate's
 * facts and the reports are derived from these and nothing else.
 *
 * Contract: events are immutable once written; new kinds may be added, old
 * kinds never change meaning. No secrets, no patient data.
 */
export type RunCommand = 'plan' | 'rehearse' | 'upgrade' | 'verify';

export type RunOutcome =
  | 'planned' // plan: discovery only
  | 'rehearsed' // rehearse: captured and proven, target untouched
  | 'verified' // verify: newest artifacts proven again
  | 'refused' // the gate refused: nothing destroyed
  | 'not-confirmed' // the gate passed but nobody confirmed the crossing: nothing destroyed
  | 'landed' // rebuilt, restored and validated
  | 'waiting' // manual crossing: Rubicon stopped at the crossing and waits for `rubicon confirm RUN --crossed`
  | 'interrupted' // stopped by SIGINT/SIGTERM; resume continues it
  | 'failed'; // stopped by an error; see the last events

export type JournalEvent =
  | {
      type: 'run.started';
      runId: string;
      command: RunCommand;
      target: string;
      runbookPath: string;
      /** SHA-256 of the runbook file's bytes. */
      runbookHash: string;
      policy: Policy;
      vaults: VaultInfo[];
      manualSteps: ManualStep[];
      overrides: Override[];
      rubiconVersion: string;
      host: string;
      /** The key that signs this run's records and permit (its id only; the key itself lives outside the state directory). */
      signingKeyId?: string;
    }
  | { type: 'run.resumed'; pid: number }
  | { type: 'phase.started'; phase: Phase }
  | { type: 'phase.completed'; phase: Phase; durationMs: number }
  | { type: 'item.discovered'; item: Item }
  | { type: 'capture.started'; itemId: string; method: string; artifactId: string }
  | { type: 'artifact.captured'; artifact: Artifact }
  | { type: 'capture.failed'; itemId: string; method: string; artifactId: string; code: string; message: string }
  | { type: 'copy.checked'; copy: Copy }
  | { type: 'proof.recorded'; proof: Proof }
  | { type: 'target.frozen' }
  | { type: 'target.thawed' }
  | { type: 'drift.scanned'; drift: Drift }
  /** An engine checked the server the target lands on (version, edition, limits): before capture and right before the gate. */
  | { type: 'preflight.checked'; preflight: LandingPreflight }
  | { type: 'rollback.created'; rollbackPoint: RollbackPoint }
  | { type: 'rollback.released'; rollbackPointId: string }
  /**
   * `rubicon rollback RUN_ID` (src/infra/azure/rollback.ts), appended to the
   * run's own journal: started (who confirmed, how), completed (where the OS
   * disk came from, the disk, what the stack now runs) or failed (the error's
   * code and message). The driver's lines in between (locks lifted and
   * restored, disarming) are `note` events. Never a secret.
   */
  | { type: 'rollback.started'; by: 'flag' | 'prompt'; who: string }
  | { type: 'rollback.completed'; from: 'retired-os-disk' | 'os-disk-snapshot'; diskId: string; image: string }
  | { type: 'rollback.failed'; code: string; message: string }
  | { type: 'gate.evaluated'; result: GateResult }
  /**
   * The journal head (record `seq`, its `hash`) was written into these vaults
   * (src/run/heads.ts) after the gate passed or the landing finished, so a
   * journal rewritten afterwards disagrees with them (`rubicon audit`).
   */
  | { type: 'journal.head.stored'; stage: 'gate' | 'landed'; seq: number; hash: string; vaults: string[]; failed: { vault: string; reason: string }[] }
  /** The permit, with its Ed25519 signature (src/trust/permit.ts) by the run's signing key. */
  | { type: 'permit.issued'; permit: Permit; keyId?: string; signature?: string }
  | { type: 'crossing.confirmed'; by: 'flag' | 'prompt' | 'command'; who: string }
  | { type: 'crossing.started'; permitId: string; image: string }
  /** `machine`: the machine the crossing made, as its platform names it (pulumi-azure: the new VM's ARM id and `vmId`); landing must reach that one. */
  | { type: 'crossing.completed'; image: string; machine?: { resourceId: string; uniqueId: string } }
  | { type: 'landing.restored'; itemId: string; artifactId: string; vault: string; bytes: number; durationMs: number }
  | {
      type: 'landing.validated';
      itemId: string;
      artifactId: string;
      outcome: 'passed' | 'failed';
      checks: { name: string; status: 'passed' | 'failed' | 'skipped'; detail: string }[];
    }
  | { type: 'report.written'; files: { kind: 'json' | 'markdown' | 'html' | 'junit'; path: string }[] }
  | { type: 'note'; level: 'info' | 'warn' | 'error'; message: string; itemId?: string }
  /**
   * A long action on a machine, recorded before it starts (src/run/steps.ts).
   * `what` is a plain description (tool and purpose), never its arguments'
   * secrets or its output.
   */
  | { type: 'step.started'; stepId: string; machine: string; what: string; idempotent: boolean }
  /**
   * The step ended (or a resumed run re-attached to its result). The tool's
   * output is never copied here: it is kept in `log` beside the run
   * (relative to the run folder), with its SHA-256 and line count.
   */
  | {
      type: 'step.completed';
      stepId: string;
      exitCode: number;
      durationMs: number;
      reattached: boolean;
      log?: { path: string; sha256: string; lines: number; bytes: number };
    }
  /** The target's services as found and stopped at freeze, so the thaw restores exactly that. */
  | { type: 'services.stopped'; services: { name: string; active: string; enabled: string }[] }
  /** What the engineer must do at a manual crossing, as printed. */
  | { type: 'crossing.instructions'; text: string }
  /** Who the target was before the crossing, so landing can refuse the old server (remote targets). */
  | { type: 'target.identified'; machine: string; machineId: string | null; osRelease: string | null; hostKeys: string[]; platform?: { resourceId: string; uniqueId: string } }
  /**
   * The rebuilt machine was checked before landing (a manual crossing; a
   * pulumi-azure one on a remote target). `platform`: the VM the target's
   * transport reaches now, and whether it is another one than before.
   */
  | { type: 'rebuild.verified'; machine: string; osRelease: string; machineIdChanged: boolean | null; hostKeyChanged: boolean | null; platform?: { resourceId: string; uniqueId: string; changed: boolean | null } }
  /**
   * Phases to run again: a resumed run found the target thawed since its
   * freeze (an earlier failure thawed it), so it freezes again, scans drift,
   * captures what changed and evaluates the gate again before any crossing.
   */
  | { type: 'phases.reopened'; phases: Phase[]; reason: string }
  /** What the crossing destroys (the infra driver's declaration) and every exclusion in force; once per run, at discover. */
  | { type: 'scope.declared'; scope: ScopeOfDestruction }
  /** The coverage map after the capture and after the final capture: counts and first paths per class, never contents. */
  | { type: 'coverage.mapped'; map: CoverageMap }
  /**
   * A vault gave a machine time-limited access (src/vaults/grants.ts),
   * journaled before the machine uses it, so that a resumed run can revoke a
   * grant a killed process left behind, or say when it expires by itself.
   * Where things are, never a secret: the grant's folder on the machine.
   * `holder: 'sql-server-credential'`: a SAS held by SQL Server (BACKUP TO
   * URL, RESTORE FROM URL) as the credential named `dir` (the container
   * URL); revoked by dropping that credential, the SAS itself lapses at
   * `expiresAt`.
   */
  | { type: 'grant.issued'; grant: { id: string; vault: string; machine: string; mode: 'read' | 'write'; expiresAt: string; dir: string; holder?: 'sql-server-credential' } }
  /** Grants whose key was removed from the vault host (and whose folder on the machine was removed, unless `folderLeft`). */
  | { type: 'grant.revoked'; grantIds: string[]; folderLeft?: boolean }
  /**
   * A person confirmed a manual step of the runbook (`rubicon confirm RUN_ID
   * STEP --by NAME`); the record's time is the confirmation's time. The gate
   * reads it as the step's confirmedBy / confirmedAt.
   */
  | { type: 'manual-step.confirmed'; stepId: string; by: string }
  /** A signal stopped the run; it was thawed and `rubicon resume` continues it. */
  | { type: 'run.interrupted'; signal: string }
  | { type: 'run.completed'; outcome: RunOutcome; exitCode: number; error?: { code: string; message: string } };

export type JournalEventType = JournalEvent['type'];

/** One line of the journal file. `hash` = SHA-256(prev + canonical JSON of {seq, at, event}). */
export interface JournalRecord {
  seq: number;
  at: string;
  event: JournalEvent;
  prev: string;
  hash: string;
  /**
   * Ed25519 signature (base64) by the run's signing key over
   * `rubicon/journal/v1` + canonical {seq, hash} (src/run/audit.ts): a
   * rewritten journal with a recomputed chain has no valid signatures.
   */
  sig?: string;
}

/**
 * Progress events: for people watching, never journaled. Domain code emits
 * them through an `onEvent` callback; the CLI renders them as text or JSON.
 */
export type ProgressEvent =
  | { type: 'progress'; step: string; done: number; total: number; unit: 'bytes' | 'files' | 'items' }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string };

export type RunEvent = (JournalRecord & { kind: 'journal' }) | (ProgressEvent & { kind: 'progress' });

export type OnEvent = (event: RunEvent) => void;
