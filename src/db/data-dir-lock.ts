import fs from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';

export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `The embedded database in ${dataDir} is in use by another jobs-gateway process (a running server?). ` +
        'Stop that process first, or set DATABASE_URL to use a shared PostgreSQL.',
    );
  }
}

/**
 * PGlite is one process's database: a second process opening the same directory would corrupt it.
 * proper-lockfile holds an atomic mkdir lock that it refreshes, so a crashed holder's lock goes
 * stale on its own instead of blocking the next start forever.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await fs.mkdir(dataDir, { recursive: true });
  const target = path.resolve(dataDir);
  try {
    return await lockfile.lock(target, {
      lockfilePath: path.join(target, 'gateway.lock'),
      stale: 10_000,
      update: 2_000,
      retries: 0,
      realpath: false,
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOCKED') throw new DataDirInUseError(dataDir);
    throw error;
  }
}
