import { createApp } from './app.js';
import { ConfigError, configDefault, loadConfig } from './config.js';
import { DataDirInUseError } from './db/data-dir-lock.js';
import { createLogger } from './logger.js';
import { PortInUseError, explainListenError } from './port-in-use.js';

// The only module with side effects: read the environment, start, and stop cleanly on a signal.
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);

  // Signals are handled from the first moment, so that one arriving during start-up still closes
  // the database cleanly instead of killing the process mid-write.
  const starting = createApp(config, logger);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    starting
      .then((app) => app.close())
      .then(
        () => {
          logger.info('stopped');
          process.exit(0);
        },
        (error: unknown) => {
          logger.error({ err: error }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  const app = await starting;
  if (stopping) return;
  let url: string;
  try {
    url = await app.start();
  } catch (error) {
    // The database is open: close it cleanly before saying why.
    await app.close().catch(() => undefined);
    throw explainListenError(error, config.port, 'npm start');
  }
  const where = config.databaseUrl ? 'PostgreSQL' : `the embedded database in ${config.dataDir}`;
  logger.info(
    { url: `${url}/graphql`, database: app.database.kind },
    `jobs-gateway listening on ${url} (GraphQL at ${url}/graphql, REST at ${url}/api/jobs) on ${where}`,
  );
  if ((await app.apiKeys.countActive()) === 0) {
    // The README's two keys (a dashboard's, a worker's), for the database this server uses.
    const embedded = !config.databaseUrl;
    const cli = `${embedded && config.dataDir !== configDefault('DATA_DIR') ? `DATA_DIR=${shellWord(config.dataDir)} ` : ''}npx jobs-gateway keys create --workspace demo`;
    logger.warn(
      `No API key exists yet: ${embedded ? 'stop this server (Ctrl+C), then ' : ''}create one for dashboards and one for workers with: ` +
        `${cli} --name dashboard && ${cli} --name worker --scope jobs:read --scope jobs:write`,
    );
  }
}

/** `value` as one shell word: as it is when that is safe, else single-quoted. */
function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof DataDirInUseError || error instanceof PortInUseError) {
    console.error(error.message);
  } else {
    console.error('jobs-gateway failed to start:', error);
  }
  process.exit(1);
});
