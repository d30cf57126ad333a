import pg from 'pg';

/** The PostgreSQL the suite runs against: TEST_DATABASE_URL, or this project's machines' default. */
export function postgresUrl(): string {
  return process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
}

export type PostgresState = 'ready' | 'created' | 'unreachable';

/**
 * Whether the suite's PostgreSQL answers; a server that answers but lacks the database gets it
 * created (through its `postgres` maintenance database), so that a newcomer's `npm test` runs the
 * PostgreSQL half instead of skipping it.
 */
export async function ensureTestDatabase(url = postgresUrl()): Promise<PostgresState> {
  try {
    await query(url, 'SELECT 1');
    return 'ready';
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') return 'unreachable'; // 3D000: no such database
  }
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  const maintenance = new URL(url);
  maintenance.pathname = '/postgres';
  try {
    await query(maintenance.toString(), `CREATE DATABASE "${name.replaceAll('"', '""')}"`);
  } catch (error) {
    // Another run created it meanwhile: as good.
    if ((error as { code?: string }).code !== '42P04') return 'unreachable';
  }
  return 'created';
}

async function query(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query(sql);
  } finally {
    await client.end().catch(() => {});
  }
}
