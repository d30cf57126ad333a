import { parseArgs } from 'node:util';
import { type ApiKeyInfo, ApiKeyStore, UnknownKeyError, UnknownWorkspaceError } from '../auth/api-keys.js';
import { DEFAULT_SCOPES, SCOPES, isScope } from '../auth/scopes.js';
import type { PrismaClient } from '../db/database.js';

/** The command line is wrong (exit 2, with usage). */
export class UsageError extends Error {}
/** The command is well-formed but cannot be carried out (exit 1). */
export class CommandError extends Error {}

export const KEYS_USAGE = `Usage:
  jobs-gateway keys create --workspace <slug> [--name <text>] [--scope <scope>]...
  jobs-gateway keys list --workspace <slug>
  jobs-gateway keys revoke <keyId>

Scopes: ${SCOPES.join(', ')} (default: ${DEFAULT_SCOPES.join(', ')}).`;

const WORKSPACE_SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Runs one `keys` subcommand; returns the lines to print. Never prints a key hash. */
export async function runKeysCommand(prisma: PrismaClient, argv: string[]): Promise<string[]> {
  const [action, ...rest] = argv;
  const store = new ApiKeyStore(prisma);
  const { values, positionals } = parse(rest);
  switch (action) {
    case 'create': {
      const workspace = requireWorkspace(values.workspace);
      const scopes = values.scope?.length ? values.scope : [...DEFAULT_SCOPES];
      const unknown = scopes.filter((scope) => !isScope(scope));
      if (unknown.length > 0) throw new UsageError(`Unknown scope ${unknown.join(', ')}. Scopes: ${SCOPES.join(', ')}.`);
      const { key, info } = await store.create({ workspace, name: values.name, scopes: scopes.filter(isScope) });
      return [
        `Created API key ${info.id} in workspace "${info.workspace}" with scopes ${info.scopes.join(', ')}.`,
        'It is shown only this once; store it now:',
        key,
      ];
    }
    case 'list': {
      const workspace = requireWorkspace(values.workspace);
      try {
        const keys = await store.list(workspace);
        return keys.length === 0 ? [`Workspace "${workspace}" has no API keys.`] : formatTable(keys);
      } catch (error) {
        if (error instanceof UnknownWorkspaceError) throw new CommandError(error.message);
        throw error;
      }
    }
    case 'revoke': {
      const keyId = positionals[0];
      if (!keyId || positionals.length > 1) throw new UsageError('keys revoke takes exactly one key id.');
      try {
        const info = await store.revoke(keyId);
        return [`Revoked API key ${info.id} (${info.prefix}…) of workspace "${info.workspace}".`];
      } catch (error) {
        if (error instanceof UnknownKeyError) throw new CommandError(error.message);
        throw error;
      }
    }
    default:
      throw new UsageError(action ? `Unknown command "keys ${action}".` : 'Missing command.');
  }
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        workspace: { type: 'string' },
        name: { type: 'string' },
        scope: { type: 'string', multiple: true },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function requireWorkspace(value: string | undefined): string {
  if (!value) throw new UsageError('--workspace <slug> is required.');
  if (!WORKSPACE_SLUG.test(value)) {
    throw new UsageError('A workspace slug is 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit.');
  }
  return value;
}

function formatTable(keys: ApiKeyInfo[]): string[] {
  const rows = [
    ['ID', 'NAME', 'KEY', 'SCOPES', 'CREATED', 'REVOKED'],
    ...keys.map((k) => [
      k.id,
      k.name ?? '-',
      `${k.prefix}…`,
      k.scopes.join(','),
      k.createdAt.toISOString(),
      k.revokedAt ? k.revokedAt.toISOString() : '-',
    ]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
}
