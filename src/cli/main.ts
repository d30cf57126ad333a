import { ConfigError, loadConfig } from '../config.js';
import { DataDirInUseError } from '../db/data-dir-lock.js';
import { openDatabase } from '../db/database.js';
import { migrate } from '../db/migrate.js';
import { CommandError, KEYS_USAGE, UsageError, parseKeysCommand, runKeysCommand } from './keys.js';

const USAGE = `jobs-gateway: manage the gateway's API keys. Uses DATABASE_URL or DATA_DIR like the server.

${KEYS_USAGE}`;

/** Exit codes: 0 done, 1 the command could not be carried out, 2 the command line is wrong. */
async function main(argv: string[]): Promise<number> {
  const [group, ...rest] = argv;
  if (!group || group === '--help' || group === '-h' || group === 'help') {
    console.log(USAGE);
    return group ? 0 : 2;
  }
  if (group !== 'keys') {
    console.error(`Unknown command "${group}".\n\n${USAGE}`);
    return 2;
  }
  // The command line first: a wrong one never waits for (or creates) a database.
  const command = parseKeysCommand(rest);
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
    for (const line of await runKeysCommand(database.prisma, command)) console.log(line);
    return 0;
  } finally {
    await database.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n\n${KEYS_USAGE}`);
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
