/**
 * The command table (src/cli/commands.ts) is consistent about where runs
 * are kept: every command that reads or writes runs in the state directory
 * (it takes --state-dir) can be pointed at a shared store with --state too,
 * except `demo`, which builds its own estate and state folder.
 */
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/commands.ts';

describe('--state beside --state-dir', () => {
  it('every command that takes --state-dir takes --state (demo excepted)', () => {
    const missing = Object.entries(COMMANDS)
      .filter(([name, c]) => name !== 'demo' && c.options.includes('state-dir') && !c.options.includes('state'))
      .map(([name]) => name);
    expect(missing).toEqual([]);
    // The commands that read runs by id are among them.
    for (const name of ['resume', 'confirm', 'status', 'report', 'audit', 'rollback']) expect(COMMANDS[name]!.options).toContain('state');
  });
});
