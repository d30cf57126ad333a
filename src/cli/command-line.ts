import { type ParseArgsConfig, parseArgs } from 'node:util';

/** The command line is wrong (exit 2, with usage). */
export class UsageError extends Error {}
/** The command is well-formed but cannot be carried out (exit 1). */
export class CommandError extends Error {}

const WORKSPACE_SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** The options and positionals of a command line; a malformed one is a UsageError. */
export function parseCommandLine<Options extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: Options) {
  try {
    return parseArgs({ args, allowPositionals: true, options });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function requireWorkspace(value: string | undefined): string {
  if (!value) throw new UsageError('--workspace <slug> is required.');
  if (!WORKSPACE_SLUG.test(value)) {
    throw new UsageError('A workspace slug is 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit.');
  }
  return value;
}

/** Rows as aligned columns (the first row is the header), for a person at a terminal. */
export function columns(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd(),
  );
}
