/**
 * The key a transaction registers under with the change feed before it writes a job of a
 * workspace: the uuid's four 32-bit words folded by xor, as a signed 32-bit integer. The same as
 * the database's job_workspace_key() (prisma/migrations/20261205000000_job_feed_registrations;
 * test/e2e/live/feed-registrations.test.ts compares the two).
 */
export function workspaceKey(workspaceId: string): number {
  const hex = workspaceId.replaceAll('-', '');
  let key = 0;
  for (let i = 0; i < 32; i += 8) key ^= Number.parseInt(hex.slice(i, i + 8), 16);
  return key | 0;
}
