import { ConfigError, loadConfig } from '../config.js';
import { DataDirInUseError } from '../db/data-dir-lock.js';
import { openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { CommandError, UsageError } from './command-line.js';
import { KEYS_USAGE, parseKeysCommand, runKeysCommand } from './keys.js';
import { WEBHOOKS_USAGE, parseWebhooksCommand, runWebhooksCommand } from './webhooks.js';

const USAGE = `jobs-gateway: manage the gateway's API keys and webhook endpoints. Uses DATABASE_URL or DATA_DIR like the server.

${KEYS_USAGE}

${WEBHOOKS_USAGE}`;

/** Exit codes: 0 done, 1 the command could not be carried out, 2 the command line is wrong. */
async function main(argv: string[]): Promise<number> {
  const [group, ...rest] = argv;
  if (!group || group === '--help' || group === '-h' || group === 'help') {
    console.log(USAGE);
    return group ? 0 : 2;
  }
  if (group !== 'keys' && group !== 'webhooks') {
    console.error(`Unknown command "${group}".\n\n${USAGE}`);
    return 2;
  }
  if (rest.length === 1 && ['--help', '-h', 'help'].includes(rest[0]!)) {
    console.log(group === 'keys' ? KEYS_USAGE : WEBHOOKS_USAGE);
    return 0;
  }
  // The command line first: a wrong one never waits for (or creates) a database.
  const command = group === 'keys' ? ({ group, keys: parseKeysCommand(rest) } as const) : ({ group, webhooks: parseWebhooksCommand(rest) } as const);
  const config = loadConfig();
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    schema: config.databaseSchema,
    dataDir: config.dataDir,
    poolSize: 1,
    timeouts: config.databaseTimeouts,
  });
  try {
    await migrate(database);
    const lines =
      command.group === 'keys' ? await runKeysCommand(database.sql, command.keys) : await runWebhooksCommand(database.sql, config.webhooks, command.webhooks);
    for (const line of lines) console.log(line);
    return 0;
  } finally {
    await database.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${process.argv[2] === 'webhooks' ? WEBHOOKS_USAGE : KEYS_USAGE}`);
      process.exit(2);
    }
    if (error instanceof CommandError || error instanceof ConfigError || error instanceof DataDirInUseError) {
      console.error(error.message);
    } else {
      console.error('jobs-gateway:', error instanceof Error ? error.message : error);
    }
    process.exit(1);
  },
);
