import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataDirInUseError, lockDataDir } from '../../../src/db/data-dir-lock.js';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

/** A data directory whose lock is held (fresh, so not stale) by the process `owner` names. */
async function heldBy(owner: { pid: number; startTime: string | null }): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-lock-'));
  await fs.mkdir(path.join(dir, 'gateway.lock'));
  await fs.writeFile(path.join(dir, 'gateway.lock.owner'), JSON.stringify({ ...owner, host: os.hostname() }));
  return dir;
}

async function stat(pid: number): Promise<{ state: string; startTime: string }> {
  const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, startTime: fields[19]! };
}

/**
 * A process that stays alive (`sleep`), and one of its children that has exited and that it never
 * reaps: `exec` replaced the shell that started it, so it stays a zombie while `sleep` runs.
 */
async function parentOfAZombie(): Promise<{ alive: number; zombie: number }> {
  const child = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  const zombie = await new Promise<number>((resolve) => child.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
  await expect.poll(async () => (await stat(zombie)).state, { timeout: 5_000 }).toBe('Z');
  return { alive: child.pid!, zombie };
}

describe.skipIf(process.platform !== 'linux')('the embedded database directory lock', () => {
  it('refuses while the recorded holder runs', async () => {
    const { alive } = await parentOfAZombie();
    const dir = await heldBy({ pid: alive, startTime: (await stat(alive)).startTime });
    await expect(lockDataDir(dir)).rejects.toBeInstanceOf(DataDirInUseError);
  });

  it('takes over from a holder that is a zombie (killed, not yet reaped), though kill(pid, 0) says it exists', async () => {
    const { zombie } = await parentOfAZombie();
    expect(() => process.kill(zombie, 0)).not.toThrow();
    const dir = await heldBy({ pid: zombie, startTime: (await stat(zombie)).startTime });
    const release = await lockDataDir(dir);
    const owner = JSON.parse(await fs.readFile(path.join(dir, 'gateway.lock.owner'), 'utf8')) as { pid: number; startTime: string };
    expect(owner).toMatchObject({ pid: process.pid, startTime: (await stat(process.pid)).startTime });
    await release();
  });

  it('takes over when the recorded pid now belongs to another process (its start time differs)', async () => {
    const { alive } = await parentOfAZombie();
    const { startTime } = await stat(alive);
    const dir = await heldBy({ pid: alive, startTime: String(Number(startTime) - 1) });
    const release = await lockDataDir(dir);
    await release();
    // An owner recorded without a start time (an older version) is given the benefit of the doubt.
    const older = await heldBy({ pid: alive, startTime: null });
    await expect(lockDataDir(older)).rejects.toBeInstanceOf(DataDirInUseError);
  });
});
