import { afterAll } from 'vitest';
import { type App, createApp } from '../../src/app.js';
import type { ApiKeyStore } from '../../src/auth/api-keys.js';
import type { Scope } from '../../src/auth/scopes.js';
import { type Config, loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import type { Resolver } from '../../src/webhooks/destination.js';
import { type FreshDatabase, freshDatabase } from './databases.js';

export interface TestApp {
  url: string;
  app: App;
  database: FreshDatabase;
  /** Creates a key in `workspace` (created if new), as `jobs-gateway keys create` does. */
  createKey(workspace: string, scopes?: Scope[]): Promise<string>;
  /** With `captureLogs`, every log entry at or above `debug`, parsed. */
  logs: Array<{ level: number; msg?: string; [field: string]: unknown }>;
  close(): Promise<void>;
}

const started: TestApp[] = [];

// Every app a test file starts is closed, and its database dropped, when the file is done.
afterAll(async () => {
  await Promise.all(started.splice(0).map((app) => app.close()));
});

const ALL_SCOPES: Scope[] = ['jobs:read', 'jobs:cancel', 'jobs:write'];

/**
 * An instance that reads nothing on its own (no feed catch-up, no stalled-job sweep): for tests
 * that count the statements a request costs.
 */
export const NO_BACKGROUND_READS = { FEED_CATCH_UP_INTERVAL_MS: '3600000', JOB_STALL_SWEEP_INTERVAL_MS: '3600000', WEBHOOK_SENDING: 'false' } as const;

/**
 * A real gateway on a random port over a database of its own. Pass `database` to start a second
 * instance on the same database (after closing the first, for the embedded one).
 */
export async function startTestApp(
  options: { database?: FreshDatabase; env?: Record<string, string>; captureLogs?: boolean; webhookResolver?: Resolver } = {},
): Promise<TestApp> {
  const database = options.database ?? (await freshDatabase());
  const logs: TestApp['logs'] = [];
  const level = options.captureLogs ? 'debug' : (process.env.TEST_LOG_LEVEL ?? 'silent');
  // No warm-up unless a test asks: it would only add a second of CPU to every app the suite starts.
  const config: Config = loadConfig({ PORT: '0', LOG_LEVEL: level, WARM_UP_ROUNDS: '0', ...database.env, ...options.env });
  const destination = options.captureLogs ? { write: (line: string) => void logs.push(JSON.parse(line)) } : undefined;
  const app = await createApp(config, createLogger(config.logLevel, destination), { webhookResolver: options.webhookResolver });
  const url = await app.start();
  let closed = false;
  const testApp: TestApp = {
    url,
    app,
    database,
    logs,
    createKey: async (workspace, scopes = ALL_SCOPES) => (await app.apiKeys.create({ workspace, scopes })).key,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      if (!options.database) await database.drop();
    },
  };
  started.push(testApp);
  return testApp;
}

/** The workspace a key belongs to. */
export async function workspaceIdOf(apiKeys: ApiKeyStore, key: string): Promise<string> {
  const principal = await apiKeys.authenticate(key);
  if (!principal) throw new Error('key does not authenticate');
  return principal.workspaceId;
}
