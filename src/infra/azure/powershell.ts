/**
 * Moved to src/machines/windows/quote.ts (the one PowerShell quoting
 * function); re-exported so the Azure driver and machine port keep their
 * imports.
 */
export { psLiteral } from '../../machines/windows/quote.ts';
