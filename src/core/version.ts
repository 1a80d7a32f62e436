/** Rubicon's version (journaled with every run, printed by `rubicon --version`). A module of its own so the CLI prints it without loading the run module. */
export const RUBICON_VERSION = '0.1.0';
