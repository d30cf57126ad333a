import { positionOf } from '../../src/jobs/change-position.js';
import type { TestApp } from './test-app.js';

/**
 * A job as GraphQL answers it, without its changeCursor. A cursor handed out while an older
 * transaction could still commit is a floor below the change's own position (see
 * src/jobs/change-position.ts), so the same unchanged state can read with a larger cursor later:
 * tests that check "nothing changed" compare everything else (updatedAt moves with every write).
 */
export function withoutCursor<T extends { changeCursor?: string }>(job: T): Omit<T, 'changeCursor'>;
export function withoutCursor<T extends { changeCursor?: string }>(job: T | null): Omit<T, 'changeCursor'> | null;
export function withoutCursor<T extends { changeCursor?: string }>(job: T | null): Omit<T, 'changeCursor'> | null {
  if (job === null) return null;
  const { changeCursor: _, ...rest } = job;
  return rest;
}

/**
 * The position of a job's latest change, read from the database. A test that means "replay this
 * job's creation" subscribes after its position - 1, not after the cursor a mutation answered: that
 * one may be a floor that also replays other recent changes (when another test's transaction was
 * open at the time).
 */
export async function positionOfJob(t: TestApp, id: string): Promise<bigint> {
  return positionOf(await (await t.app.database.prisma()).job.findUniqueOrThrow({ where: { id } }));
}
