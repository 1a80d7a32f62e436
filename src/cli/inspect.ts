import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { EXIT, RubiconError, isRubiconError } from '../core/errors.ts';
import type { RollbackPoint } from '../core/types.ts';
import { deriveState, type RunState } from '../core/state.ts';
import { buildChecklist } from '../inventory/checklist.ts';
import { listRuns, readJournal, runPaths } from '../run/journal.ts';
import { LocalStateStore } from '../state/store.ts';
import { defaultStateDir, explainMissingRun, reportOptions, sharedState, type Flags } from './common.ts';

/**
 * The commands that read a run's journal: status, report, audit. Loaded by
 * main.ts only when one of them runs; report and audit load the run module
 * (the run's runbook copy) and the report writers only when they get there.
 */

export async function status(positionals: string[], flags: Flags): Promise<number> {
  const stateDir = defaultStateDir(flags);
  const runId = positionals[0];
  const shared = await sharedState(flags);
  if (!runId) {
    // One damaged journal must not hide the others: it is listed as damaged, and the exit code says so.
    const where = shared?.location ?? stateDir;
    const ids = shared ? await shared.listRuns() : listRuns(stateDir);
    const runs = [];
    for (const id of ids) {
      try {
        const st = deriveState(shared ? await shared.readJournal(id) : readJournal(runPaths(stateDir, id).journal, { repairTornTail: false }).slice());
        runs.push({
          runId: id,
          command: st.command,
          target: st.target,
          outcome: st.outcome ?? 'in progress (or killed: resume it)',
          startedAt: st.startedAt,
          host: st.host,
          rollbackKept: st.rollbackPoint && !st.rollbackReleased ? st.rollbackPoint : undefined,
          rollbacks: st.rollbacks,
          damaged: undefined,
        });
      } catch (e) {
        const code = isRubiconError(e) ? e.code : 'JOURNAL_CORRUPT';
        runs.push({ runId: id, command: '?', target: '?', outcome: 'damaged', damaged: { code, message: e instanceof Error ? e.message : String(e) } });
      }
    }
    if (flags.json) process.stdout.write(JSON.stringify(runs) + '\n');
    else if (runs.length === 0) process.stdout.write(`no runs in ${where}\n`);
    else {
      for (const r of runs) process.stdout.write(`${r.runId}  ${r.command.padEnd(8)} ${r.target.padEnd(16)} ${r.damaged ? `DAMAGED ${r.damaged.code}: ${r.damaged.message}` : r.outcome}\n`);
      // Rollback assets cost money and hold patient data: listed until the run releases them (landing passed).
      const kept = runs.filter((r) => r.rollbackKept);
      if (kept.length > 0) process.stdout.write(`rollback points kept (released when landing passes; \`rubicon rollback RUN_ID\` on Azure):\n${kept.map((r) => `  ${r.runId}  ${rollbackKeptLine(r.rollbackKept!)}\n`).join('')}`);
      const rolled = runs.filter((r) => r.rollbacks && r.rollbacks.length > 0);
      if (rolled.length > 0) process.stdout.write(`rollbacks (\`rubicon rollback\`, from the run's journal):\n${rolled.flatMap((r) => r.rollbacks!.map((x) => `  ${r.runId}  ${rollbackDoneLine(x)}\n`)).join('')}`);
    }
    const damaged = runs.filter((r) => r.damaged);
    if (damaged.length > 0) {
      const statusHint = shared ? `\`rubicon status RUN_ID --state ${shared.location}\`` : '`rubicon status RUN_ID`';
      process.stderr.write(`rubicon: ${damaged.length} journal(s) in ${where} are damaged (${damaged.map((r) => r.runId).join(', ')}): ${statusHint} says what is wrong; the other runs are listed above\n`);
      return EXIT.failure;
    }
    return EXIT.ok;
  }
  let records;
  try {
    records = shared ? await shared.readJournal(runId) : readJournal(runPaths(stateDir, runId).journal);
  } catch (e) {
    explainMissingRun(e, runId, flags, shared);
  }
  const st = deriveState(records);
  const checklist = buildChecklist({ items: st.items, artifacts: st.artifacts, copies: st.copies, proofs: st.proofs, driftScans: st.driftScans, captureFailures: st.captureFailures });
  if (flags.json) {
    process.stdout.write(JSON.stringify({ runId, outcome: st.outcome ?? null, phases: st.phases, checklist, gate: st.gate ?? null, rollbackKept: st.rollbackPoint && !st.rollbackReleased ? st.rollbackPoint : null, rollbacks: st.rollbacks }) + '\n');
  } else {
    process.stdout.write(`${runId}: ${st.command} on ${st.target}, ${st.outcome ?? 'not finished'}\n`);
    process.stdout.write(`  journal verified: ${st.journalRecords} records, hash chain intact, head ${st.journalHead}\n`);
    for (const p of st.phases) process.stdout.write(`  ${p.phase.padEnd(14)} ${p.completedAt ? `${p.durationMs} ms` : 'started, not finished'}\n`);
    for (const row of checklist) process.stdout.write(`  ${row.status.padEnd(18)} ${row.name}  ${row.notes.join('; ')}\n`);
    if (st.rollbackPoint && !st.rollbackReleased) process.stdout.write(`  rollback point kept: ${rollbackKeptLine(st.rollbackPoint)}\n`);
    for (const x of st.rollbacks) process.stdout.write(`  rollback: ${rollbackDoneLine(x)}\n`);
  }
  return EXIT.ok;
}

/** Pure: one line for a `rubicon rollback` of a run, as its journal records it. */
export function rollbackDoneLine(x: RunState['rollbacks'][number]): string {
  const by = `started ${x.startedAt} by ${x.by}`;
  if (x.outcome === 'completed') return `${by}, completed ${x.at}: the target boots from ${x.diskId} (${x.from === 'retired-os-disk' ? 'the OS disk the crossing retired' : 'a disk made from its snapshot'})`;
  if (x.outcome === 'failed') return `${by}, FAILED ${x.at}: ${x.error?.code ?? '?'}: ${x.error?.message ?? ''}`;
  return `${by}, not finished (interrupted?): run \`rubicon rollback\` again`;
}

/** Pure: one line naming a rollback point that is still kept, and for Azure the retired OS disk beside its snapshots. */
export function rollbackKeptLine(p: RollbackPoint): string {
  if (p.kind === 'azure-disk-snapshot') {
    const names = p.location.split(',').filter((x) => x !== '').map((id) => id.split('/').at(-1) ?? id);
    return `Azure snapshots ${names.join(', ')} and the OS disk the crossing retired (tag rubicon-role=rollback-os-disk), since ${p.createdAt}`;
  }
  return `${p.kind} at ${p.location}, since ${p.createdAt}`;
}

/**
 * `rubicon report RUN_ID`: the reports written again from the journal. With
 * --state the journal and the runbook copy come from the shared store, the
 * files are written in this agent's cache folder for the store and
 * uploaded beside the run (`runs/<id>/report/`), replacing the earlier ones.
 */
export async function report(positionals: string[], flags: Flags): Promise<number> {
  const runId = positionals[0];
  if (!runId) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon report needs a run id', { hint: 'list runs with `rubicon status`' });
  const shared = await sharedState(flags);
  const files = await rewriteReports(runId, flags, shared);
  if (flags.html) {
    const html = files.find((f) => f.kind === 'html');
    if (html) await copyFile(html.path, path.resolve(flags.html));
  }
  for (const f of files) process.stdout.write(`${f.kind.padEnd(8)} ${f.path}\n`);
  if (flags.html) process.stdout.write(`html     ${path.resolve(flags.html)}\n`);
  if (shared) process.stdout.write(`uploaded to ${shared.location}, run ${runId}, report/\n`);
  return EXIT.ok;
}

/**
 * Writes a run's reports again from its journal (`rubicon report`, and
 * `rubicon rollback` once it has appended to the journal) and, with a shared
 * store, uploads them beside the run. Returns the files written.
 */
export async function rewriteReports(runId: string, flags: Flags, shared?: Awaited<ReturnType<typeof sharedState>>): Promise<Array<{ kind: string; path: string }>> {
  const stateDir = defaultStateDir(flags);
  const store = shared ?? new LocalStateStore(stateDir);
  const paths = store.paths(runId);
  let records;
  try {
    records = shared ? await shared.readJournal(runId) : readJournal(paths.journal);
  } catch (e) {
    explainMissingRun(e, runId, flags, shared);
  }
  const { loadRunRunbook } = await import('../run/run.ts');
  const { expectedCrossing, writeReports } = await import('../report/index.ts');
  const st = deriveState(records);
  const checklist = buildChecklist({ items: st.items, artifacts: st.artifacts, copies: st.copies, proofs: st.proofs, driftScans: st.driftScans, captureFailures: st.captureFailures });
  // The same window estimate as the run's own report: an earlier run's crossing of this target, else the runbook's figure.
  const rb = await loadRunRunbook(st.runbookPath, (shared ? await shared.runbookCopy(runId) : undefined) ?? paths.runbookCopy).catch(() => undefined);
  const crossing = await expectedCrossing(
    shared ?? { listRuns: async () => listRuns(stateDir), readJournal: async (id) => readJournal(runPaths(stateDir, id).journal) },
    { target: st.target, runId, runbookMinutes: rb?.target.expectedCrossingMinutes },
  );
  const files = await writeReports(st, checklist, paths.reports, { ...reportOptions(flags), ...(crossing ? { expectedCrossing: crossing } : {}) });
  if (shared) await shared.flush(runId);
  return files;
}

/**
 * `rubicon audit RUN_ID`: the hash chain (readJournal) and every record's
 * signature, checked against the run's own key as this machine knows it
 * (the runbook's trust.signingKey, or this user's key) or an auditor's
 * `--public-key FILE`, never a key the journal names. Exit 0 when intact,
 * 1 naming the first record that fails.
 */
export async function audit(positionals: string[], flags: Flags): Promise<number> {
  const runId = positionals[0];
  if (!runId) throw new RubiconError('ARGUMENTS_INVALID', 'rubicon audit needs a run id', { hint: 'list runs with `rubicon status`' });
  const stateDir = defaultStateDir(flags);
  const shared = await sharedState(flags);
  const paths = shared ? shared.paths(runId) : runPaths(stateDir, runId);
  let records;
  try {
    records = shared ? await shared.readJournal(runId) : readJournal(paths.journal);
  } catch (e) {
    if (isRubiconError(e) && e.code === 'JOURNAL_CORRUPT') {
      process.stdout.write(flags.json ? JSON.stringify({ runId, ok: false, reason: e.message }) + '\n' : `${runId}: NOT INTACT: ${e.message}\n`);
      return EXIT.failure;
    }
    explainMissingRun(e, runId, flags, shared);
  }
  const [{ loadRunRunbook, signingKeyOf }, { verifierFrom }, { runSigner }, { auditRecords }] = await Promise.all([import('../run/run.ts'), import('../trust/keys.ts'), import('../trust/keyring.ts'), import('../run/audit.ts')]);
  const st = deriveState(records);
  // The runbook as resume finds it: the file the run started with where it still is, else the run's copy read as if it were there.
  const rb = await loadRunRunbook(st.runbookPath, (shared ? await shared.runbookCopy(runId) : undefined) ?? paths.runbookCopy).catch(() => undefined);
  let verifier;
  if (flags.publicKey) {
    const { readFileSync } = await import('node:fs');
    verifier = verifierFrom(readFileSync(path.resolve(flags.publicKey), 'utf8'));
  } else {
    const src = rb ? signingKeyOf(rb) : undefined;
    verifier = verifierFrom(runSigner({ ...(src ? { source: src } : {}), stateDir }).signer.publicKeyPem);
    if (st.signingKeyId && st.signingKeyId !== verifier.keyId) {
      // Another agent's key (shared state): not a bad signature, a key this machine does not have. Said so, not "NOT INTACT".
      const why = `the run (started on ${st.host}) names signing key ${st.signingKeyId}, and this machine's key is ${verifier.keyId}`;
      const fix = `audit it with --public-key FILE (the public key of ${st.signingKeyId}), or on an agent that has the run's key (the runbook's trust.signingKey)`;
      process.stdout.write(flags.json ? JSON.stringify({ runId, ok: false, reason: `not verified: ${why}`, hint: fix }) + '\n' : `${runId}: NOT VERIFIED: ${why}; ${fix}\n`);
      return EXIT.failure;
    }
  }
  const r = auditRecords(records, verifier);
  const recorded = st.signingKeyId ? ` (the run names key ${st.signingKeyId})` : '';
  // The journal heads the run left in its vaults (src/run/heads.ts): a journal rewritten even with the key disagrees with them.
  let vaults: import('../run/audit-vaults.ts').VaultAudit | undefined;
  if (!flags.journalOnly) {
    if (!rb) vaults = { agreed: [], findings: [], unreachable: [{ vault: '(all)', reason: `the run's runbook copy ${paths.runbookCopy} cannot be read, so its vaults are unknown` }] };
    else vaults = await (await import('../run/audit-vaults.ts')).auditVaultHeads({ runId, records, runbook: rb, verifier, workDir: paths.work });
  }
  const vaultsOk = !vaults || (vaults.findings.length === 0 && vaults.unreachable.length === 0);
  if (flags.json) process.stdout.write(JSON.stringify({ runId, ...r, ...(vaults ? { vaults } : {}) }) + '\n');
  else {
    if (r.ok) process.stdout.write(`${runId}: ${vaultsOk ? 'intact' : 'journal signed'}: ${r.records} records, hash chain and every signature verified with key ${r.keyId}${recorded}; head ${r.head}\n`);
    else process.stdout.write(`${runId}: NOT INTACT: record ${r.firstBad.seq} (${r.firstBad.type}) ${r.firstBad.reason}${recorded}; nothing from it on can be trusted\n`);
    if (vaults) {
      const agreed = [...new Set(vaults.agreed.map((a) => `${a.vault} (${a.stage} at record ${a.seq})`))];
      if (agreed.length > 0) process.stdout.write(`  journal heads in the vaults agree: ${agreed.join(', ')}\n`);
      else if (vaultsOk) process.stdout.write('  no journal head in the vaults (the run did not reach the gate, or its vaults keep no run documents)\n');
      for (const f of vaults.findings) process.stdout.write(`  NOT INTACT: ${f.message}\n`);
      for (const u of vaults.unreachable) process.stdout.write(`  NOT CHECKED: vault ${u.vault}: ${u.reason} (use --journal-only to check the journal alone)\n`);
    }
  }
  return r.ok && vaultsOk ? EXIT.ok : EXIT.failure;
}