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
