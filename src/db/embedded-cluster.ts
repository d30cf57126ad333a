import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { EMBEDDED_INITDB_TIMEOUT_MS } from '../limits/fixed.js';

/** What the child runs: PGlite's own initdb, then a clean close (argv: PGlite's path, the directory, its start parameters). */
const CREATE_CLUSTER = `const { PGlite } = require(process.argv[1]);
PGlite.create(process.argv[2], { startParams: JSON.parse(process.argv[3]) })
  .then((db) => db.close())
  .catch((error) => { process.stderr.write(String(error && error.message || error)); process.exit(1); });`;

/**
 * Where the child builds the cluster: inside the data directory (one file system, so entries move
 * by rename), named per process so that the child of a start that was killed cannot write into a
 * later start's.
 */
const STAGING_PREFIX = '.initdb-';

/**
 * Creates the embedded database's cluster in `dataDir`, if it has none yet, in a child process.
 *
 * PGlite runs initdb inside its WebAssembly memory, which then holds about 450 MiB more than a
 * running database needs, and a WebAssembly memory never shrinks: a first `npm start` (and every
 * `npm run demo`, on a throwaway directory) sat at 677 MiB for PGlite alone, against 212 MiB when
 * it opens a cluster that exists. In a child, that memory goes back to the system when it exits.
 *
 * The child builds the cluster apart, and it moves into place with `PG_VERSION` last: a child cut
 * off (a signal, Ctrl+C, the timeout) leaves only its staging directory, which the next start
 * removes; only a stop during the moves themselves (milliseconds) leaves entries without
 * `PG_VERSION`, which the next start then reports. Returns why it could not, if it could not: the
 * caller's own open then runs initdb in-process, or reports what stops it.
 */
export async function createEmbeddedClusterApart(dataDir: string, startParams: readonly string[]): Promise<{ created: boolean; failure?: string }> {
  if (existsSync(path.join(dataDir, 'PG_VERSION'))) return { created: false };
  const staging = path.join(dataDir, `${STAGING_PREFIX}${process.pid}`);
  const pglite = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  try {
    await fs.mkdir(dataDir, { recursive: true });
    for (const entry of await fs.readdir(dataDir)) {
      if (entry.startsWith(STAGING_PREFIX)) await fs.rm(path.join(dataDir, entry), { recursive: true, force: true }); // earlier starts', cut off
    }
    await fs.mkdir(staging);
    await promisify(execFile)(process.execPath, ['-e', CREATE_CLUSTER, pglite, staging, JSON.stringify(startParams)], {
      timeout: EMBEDDED_INITDB_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    const entries = (await fs.readdir(staging)).filter((entry) => entry !== 'PG_VERSION');
    for (const entry of entries) await fs.rename(path.join(staging, entry), path.join(dataDir, entry));
    await fs.rename(path.join(staging, 'PG_VERSION'), path.join(dataDir, 'PG_VERSION'));
    return { created: true };
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message?: string };
    return { created: false, failure: (stderr || message || String(error)).slice(0, 500) };
  } finally {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}
