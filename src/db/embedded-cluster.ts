import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';

/** What the child runs: PGlite's own initdb, then a clean close (argv: PGlite's path, the directory, its start parameters). */
const CREATE_CLUSTER = `const { PGlite } = require(process.argv[1]);
PGlite.create(process.argv[2], { startParams: JSON.parse(process.argv[3]) })
  .then((db) => db.close())
  .catch((error) => { process.stderr.write(String(error && error.message || error)); process.exit(1); });`;

/**
 * Creates the embedded database's cluster in `dataDir`, if it has none yet, in a child process.
 *
 * PGlite runs initdb inside its WebAssembly memory, which then holds about 450 MiB more than a
 * running database needs, and a WebAssembly memory never shrinks: a first `npm start` (and every
 * `npm run demo`, on a throwaway directory) sat at 677 MiB for PGlite alone, against 212 MiB when
 * it opens a cluster that exists. In a child, that memory goes back to the system when it exits.
 * Returns false when there was a cluster already, or the child failed: the caller's own open then
 * runs initdb itself, or reports what stops it.
 */
export async function createEmbeddedClusterApart(dataDir: string, startParams: readonly string[]): Promise<boolean> {
  if (existsSync(path.join(dataDir, 'PG_VERSION'))) return false;
  const pglite = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  try {
    await promisify(execFile)(process.execPath, ['-e', CREATE_CLUSTER, pglite, dataDir, JSON.stringify(startParams)]);
    return true;
  } catch {
    return false;
  }
}
