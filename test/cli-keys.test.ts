import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { CancelJobDocument, JobsDocument } from '../src/graphql/operations.generated.js';
import { dbKind, describeDb, type FreshDatabase, freshDatabase } from './helpers/databases.js';
import { codesOf, graphql } from './helpers/http.js';
import { startTestApp } from './helpers/test-app.js';

const root = fileURLToPath(new URL('..', import.meta.url));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `jobs-gateway` command in a process of its own. */
function cli(database: FreshDatabase, ...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['src/cli/bin.js', ...args], { cwd: root, env: { ...process.env, ...database.env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const databases: FreshDatabase[] = [];
afterAll(async () => {
  for (const database of databases.splice(0)) await database.drop();
});
async function database(): Promise<FreshDatabase> {
  const db = await freshDatabase();
  databases.push(db);
  return db;
}

describeDb('jobs-gateway keys', () => {
  it('create prints the key alone on the last line; it works with exactly its scopes', async () => {
    const db = await database();
    const created = await cli(db, 'keys', 'create', '--workspace', 'acme', '--name', 'dash', '--scope', 'jobs:read', '--scope', 'jobs:write');
    expect(created.code).toBe(0);
    const lines = created.stdout.trim().split('\n');
    const key = lines.at(-1)!;
    expect(key).toMatch(/^jg_[A-Za-z0-9_-]{43}$/);
    expect(lines.slice(0, -1).join('\n')).not.toContain(key);

    const defaults = await cli(db, 'keys', 'create', '--workspace', 'acme');
    expect(defaults.code).toBe(0);
    expect(defaults.stdout).toContain('jobs:read, jobs:cancel');

    const t = await startTestApp({ database: db });
    expect((await graphql(t.url, JobsDocument, {}, key)).data).toEqual({ jobs: [] });
    expect(codesOf(await graphql(t.url, CancelJobDocument, { id: '00000000-0000-4000-8000-000000000000' }, key))).toEqual(['FORBIDDEN']);
    await t.close();
  });

  it('list shows ids, names and scopes, never the key or its hash; revoke makes it 401', async () => {
    const db = await database();
    const created = await cli(db, 'keys', 'create', '--workspace', 'listing', '--name', 'worker-7', '--scope', 'jobs:read');
    const key = created.stdout.trim().split('\n').at(-1)!;
    const id = /Created API key ([0-9a-f-]{36})/.exec(created.stdout)![1]!;

    const listed = await cli(db, 'keys', 'list', '--workspace', 'listing');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('worker-7');
    expect(listed.stdout).toContain('jobs:read');
    expect(listed.stdout).not.toContain(key);
    expect(listed.stdout).not.toContain(createHash('sha256').update(key).digest('hex'));

    const revoked = await cli(db, 'keys', 'revoke', id);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`Revoked API key ${id}`);
    expect((await cli(db, 'keys', 'list', '--workspace', 'listing')).stdout).toMatch(new RegExp(`${id}.*\\d{4}-\\d\\d-\\d\\dT.*\\d{4}-\\d\\d-\\d\\dT`));

    const t = await startTestApp({ database: db });
    const result = await graphql(t.url, JobsDocument, {}, key);
    expect(result.status).toBe(401);
    await t.close();
  });

  it('exits 1 with a message for what cannot be done, 2 with usage for a wrong command line', async () => {
    const db = await database();
    const unknownKey = await cli(db, 'keys', 'revoke', '00000000-0000-4000-8000-000000000000');
    expect(unknownKey.code).toBe(1);
    expect(unknownKey.stderr).toContain('No API key');
    const unknownWorkspace = await cli(db, 'keys', 'list', '--workspace', 'nobody-here');
    expect(unknownWorkspace.code).toBe(1);
    for (const args of [['keys', 'create'], ['keys', 'create', '--workspace', 'x', '--scope', 'jobs:everything'], ['keys', 'rotate'], ['keys', 'create', '--workspace', 'Not A Slug'], ['frobnicate']]) {
      const result = await cli(db, ...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain('Usage');
    }
  });

  it.skipIf(dbKind !== 'embedded')('refuses, without hanging or harm, while a server holds the embedded database', async () => {
    const db = await database();
    const t = await startTestApp({ database: db });
    const key = await t.createKey('held');
    const refused = await cli(db, 'keys', 'create', '--workspace', 'held');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('in use');
    // The server goes on, its data intact.
    expect((await graphql(t.url, JobsDocument, {}, key)).data).toEqual({ jobs: [] });
    await t.close();
    // Once the server has stopped, the CLI works on the same data.
    expect((await cli(db, 'keys', 'list', '--workspace', 'held')).code).toBe(0);
  });
});
