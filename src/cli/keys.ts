import { type ApiKeyInfo, ApiKeyStore, UnknownKeyError, UnknownWorkspaceError } from '../auth/api-keys.js';
import { DEFAULT_SCOPES, SCOPES, type Scope, isScope } from '../auth/scopes.js';
import type { SqlClient } from '../db/sql.js';
import { CommandError, UsageError, columns, parseCommandLine, requireWorkspace } from './command-line.js';

export const KEYS_USAGE = `Usage:
  jobs-gateway keys create --workspace <slug> [--name <text>] [--scope <scope>]...
  jobs-gateway keys list --workspace <slug>
  jobs-gateway keys revoke <keyId>

Scopes: ${SCOPES.join(', ')} (default: ${DEFAULT_SCOPES.join(', ')}).`;

export type KeysCommand =
  | { action: 'create'; workspace: string; name: string | undefined; scopes: Scope[] }
  | { action: 'list'; workspace: string }
  | { action: 'revoke'; keyId: string };

/**
 * Checks a `keys` command line without touching any database, so that a wrong one is answered
 * (exit 2, with usage) even while the database is unreachable or held by a server.
 */
export function parseKeysCommand(argv: string[]): KeysCommand {
  const [action, ...rest] = argv;
  const { values, positionals } = parseCommandLine(rest, {
    workspace: { type: 'string' },
    name: { type: 'string' },
    scope: { type: 'string', multiple: true },
  });
  switch (action) {
    case 'create': {
      const workspace = requireWorkspace(values.workspace);
      const scopes = values.scope?.length ? values.scope : [...DEFAULT_SCOPES];
      const unknown = scopes.filter((scope) => !isScope(scope));
      if (unknown.length > 0) throw new UsageError(`Unknown scope ${unknown.join(', ')}. Scopes: ${SCOPES.join(', ')}.`);
      return { action, workspace, name: values.name, scopes: scopes.filter(isScope) };
    }
    case 'list':
      return { action, workspace: requireWorkspace(values.workspace) };
    case 'revoke': {
      const keyId = positionals[0];
      if (!keyId || positionals.length > 1) throw new UsageError('keys revoke takes exactly one key id.');
      return { action, keyId };
    }
    default:
      throw new UsageError(action ? `Unknown command "keys ${action}".` : 'Missing command.');
  }
}

/** Carries out a parsed `keys` command; returns the lines to print. Never prints a key hash. */
export async function runKeysCommand(sql: Pick<SqlClient, 'query'>, command: KeysCommand): Promise<string[]> {
  const store = new ApiKeyStore(sql);
  switch (command.action) {
    case 'create': {
      const { key, info } = await store.create({ workspace: command.workspace, name: command.name, scopes: command.scopes });
      return [
        `Created API key ${info.id} in workspace "${info.workspace}" with scopes ${info.scopes.join(', ')}.`,
        'It is shown only this once; store it now:',
        key,
      ];
    }
    case 'list': {
      try {
        const keys = await store.list(command.workspace);
        return keys.length === 0 ? [`Workspace "${command.workspace}" has no API keys.`] : formatTable(keys);
      } catch (error) {
        if (error instanceof UnknownWorkspaceError) throw new CommandError(error.message);
        throw error;
      }
    }
    case 'revoke': {
      try {
        const info = await store.revoke(command.keyId);
        return [`Revoked API key ${info.id} (${info.prefix}…) of workspace "${info.workspace}".`];
      } catch (error) {
        if (error instanceof UnknownKeyError) throw new CommandError(error.message);
        throw error;
      }
    }
  }
}

function formatTable(keys: ApiKeyInfo[]): string[] {
  return columns([
    ['ID', 'NAME', 'KEY', 'SCOPES', 'CREATED', 'REVOKED'],
    ...keys.map((k) => [k.id, k.name ?? '-', `${k.prefix}…`, k.scopes.join(','), k.createdAt.toISOString(), k.revokedAt ? k.revokedAt.toISOString() : '-']),
  ]);
}
