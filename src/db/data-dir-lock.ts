import fs from 'node:fs/promises';
import os from 'node:os';
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
 * stale on its own instead of blocking the next start forever. Beside it we record who holds it:
 * when that process is gone (SIGKILL, a crash), the next start takes the lock at once instead of
 * waiting for it to go stale; while it lives (or on another host, where we cannot tell), it refuses.
 * "Gone" includes a zombie (killed, not yet reaped: `kill(pid, 0)` still succeeds on it, and an
 * init that reaps late kept one for seconds) and a pid now used by another process (the start time
 * recorded beside the pid differs), both read from /proc where there is one.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await fs.mkdir(dataDir, { recursive: true });
  const target = path.resolve(dataDir);
  const lockPath = path.join(target, 'gateway.lock');
  const ownerPath = path.join(target, 'gateway.lock.owner');
  const take = () => lockfile.lock(target, { lockfilePath: lockPath, stale: 10_000, update: 2_000, retries: 0, realpath: false });
  let release: () => Promise<void>;
  try {
    release = await take();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
    if (!(await holderIsGone(ownerPath))) throw new DataDirInUseError(dataDir);
    await fs.rm(lockPath, { recursive: true, force: true });
    try {
      release = await take();
    } catch (again) {
      // Another process took it between our look and our take.
      if ((again as NodeJS.ErrnoException).code === 'ELOCKED') throw new DataDirInUseError(dataDir);
      throw again;
    }
  }
  await fs.writeFile(ownerPath, JSON.stringify({ pid: process.pid, host: os.hostname(), startTime: (await processStat(process.pid))?.startTime ?? null }));
  return async () => {
    await fs.rm(ownerPath, { force: true });
    await release();
  };
}

async function holderIsGone(ownerPath: string): Promise<boolean> {
  let owner: { pid?: unknown; host?: unknown; startTime?: unknown };
  try {
    owner = JSON.parse(await fs.readFile(ownerPath, 'utf8')) as typeof owner;
  } catch {
    return false; // no record (a holder still starting, or an older version): let the lock go stale
  }
  if (owner.host !== os.hostname() || typeof owner.pid !== 'number' || owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // A process has the pid. Without /proc (not Linux), it counts as the holder.
  const stat = await processStat(owner.pid);
  if (!stat) return false;
  if (stat.state === 'Z' || stat.state === 'X') return true;
  return typeof owner.startTime === 'string' && owner.startTime !== stat.startTime;
}

/**
 * A process's state and start time (clock ticks after boot) from /proc/<pid>/stat, or undefined
 * where there is no such file. The command name, second field, is in parentheses and may hold
 * spaces and parentheses itself: the fields are counted from the last ')'.
 */
async function processStat(pid: number): Promise<{ state: string; startTime: string } | undefined> {
  let text: string;
  try {
    text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // Fields 3 (state) and 22 (starttime) of proc(5), counted from field 3.
  const [state, startTime] = [fields[0], fields[19]];
  return state && startTime ? { state, startTime } : undefined;
}
