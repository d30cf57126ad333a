import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, expect, it } from 'vitest';
import { CancelJobDocument, CreateJobDocument, JobDocument, JobsDocument } from '../../../src/graphql/operations.generated.js';
import { withoutCursor } from '../../helpers/cursor.js';
import { type FreshDatabase, dbKind, describeDb, freshDatabase } from '../../helpers/databases.js';
import { spawnGateway } from '../../helpers/gateway-process.js';
import { codesOf, graphql, graphqlOk } from '../../helpers/http.js';
import { startTestApp } from '../../helpers/test-app.js';
import { repoRoot } from '../../helpers/paths.js';
import { oneStepJob } from '../../helpers/jobs.js';

/** No CLI run may take longer: a hang fails the test instead of stalling the suite. */
const CLI_TIMEOUT_MS = 60_000;
const MISSING = '00000000-0000-4000-8000-000000000000';
const KEY = /^jg_[A-Za-z0-9_-]{43}$/;
const input = oneStepJob({ displayTitle: 'From the CLI test' });

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

interface CliResult {
  /** The exit code; null when the process was killed (by the timeout). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node src/cli/bin.js ...args` against `database`, in a process of its own. */
function cli(database: FreshDatabase, ...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['src/cli/bin.js', ...args], {
      cwd: repoRoot,
      // DATABASE_URL: '' first, so an inherited one cannot point the embedded runs at PostgreSQL.
      env: { ...process.env, DATABASE_URL: '', ...database.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: CLI_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** `keys create`'s output: the key alone on the last line, and the id it reports. */
function created(result: CliResult): { key: string; id: string; before: string } {
  expect(result, result.stderr).toMatchObject({ code: 0, signal: null });
  const lines = result.stdout.trimEnd().split('\n');
  const key = lines.at(-1)!;
  expect(key).toMatch(KEY);
  const before = lines.slice(0, -1).join('\n');
  const id = /\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b/.exec(before)?.[1];
  expect(id, result.stdout).toBeDefined();
  return { key, id: id!, before };
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

describeDb('the jobs-gateway keys command', () => {
  it('create prints the new key alone on the last line; it works on a server with exactly the given scopes', { timeout: 240_000 }, async () => {
    const db = await database();
    const dash = created(await cli(db, 'keys', 'create', '--workspace', 'acme', '--name', 'dash', '--scope', 'jobs:read', '--scope', 'jobs:write'));
    // Only the last line holds the key; the rest never repeats it.
    expect(dash.before).not.toContain(dash.key);
    expect(dash.before).toContain('jobs:read, jobs:write');
    expect(dash.before).not.toContain('jobs:cancel');
    const defaults = created(await cli(db, 'keys', 'create', '--workspace', 'acme'));
    expect(defaults.key).not.toBe(dash.key);
    expect(defaults.before).toContain('jobs:read, jobs:cancel');
    expect(defaults.before).not.toContain('jobs:write');

    // For the embedded database the server may open it only now that the CLI is done.
    const t = await startTestApp({ database: db });
    try {
      const stored = await t.app.apiKeys.list('acme');
      expect(stored.map((k) => ({ id: k.id, name: k.name, scopes: [...k.scopes].sort(), revokedAt: k.revokedAt }))).toEqual([
        { id: dash.id, name: 'dash', scopes: ['jobs:read', 'jobs:write'], revokedAt: null },
        { id: defaults.id, name: null, scopes: ['jobs:cancel', 'jobs:read'], revokedAt: null },
      ]);

      // jobs:read + jobs:write: reads and writes in workspace "acme", cannot cancel.
      const other = await t.createKey('acme');
      const fromOther = (await graphqlOk(t.url, CreateJobDocument, { input }, other)).createJob;
      expect((await graphqlOk(t.url, JobsDocument, {}, dash.key)).jobs.map((j) => j.id)).toEqual([fromOther.id]);
      const written = (await graphqlOk(t.url, CreateJobDocument, { input }, dash.key)).createJob;
      expect(written.workspaceId).toBe(fromOther.workspaceId);
      const cancel = await graphql(t.url, CancelJobDocument, { id: written.id }, dash.key);
      expect(cancel.status).toBe(403);
      expect(codesOf(cancel)).toEqual(['FORBIDDEN']);
      expect((await graphqlOk(t.url, JobDocument, { id: written.id }, other)).job).toMatchObject({ status: 'RUNNING', error: null });

      // Default scopes (jobs:read + jobs:cancel): reads and cancels, cannot write.
      expect((await graphqlOk(t.url, JobsDocument, {}, defaults.key)).jobs.map((j) => j.id).sort()).toEqual([fromOther.id, written.id].sort());
      const create = await graphql(t.url, CreateJobDocument, { input }, defaults.key);
      expect(create.status).toBe(403);
      expect(codesOf(create)).toEqual(['FORBIDDEN']);
      const cancelled = await graphqlOk(t.url, CancelJobDocument, { id: written.id }, defaults.key);
      expect(cancelled.cancelJob).toMatchObject({ success: true, job: { id: written.id, status: 'FAILED', error: 'Cancelled' } });
    } finally {
      await t.close();
    }
  });

  it('list shows each key id, name and scopes, never a key or its sha256 hash', { timeout: 240_000 }, async () => {
    const db = await database();
    const dash = created(await cli(db, 'keys', 'create', '--workspace', 'acme', '--name', 'dash', '--scope', 'jobs:read', '--scope', 'jobs:write'));
    const worker = created(await cli(db, 'keys', 'create', '--workspace', 'acme', '--name', 'worker-7', '--scope', 'jobs:write'));
    const elsewhere = created(await cli(db, 'keys', 'create', '--workspace', 'globex', '--name', 'not-acme'));

    const listed = await cli(db, 'keys', 'list', '--workspace', 'acme');
    expect(listed, listed.stderr).toMatchObject({ code: 0, signal: null });
    const lines = listed.stdout.trimEnd().split('\n');
    const row = (id: string) => {
      const matching = lines.filter((line) => line.includes(id));
      expect(matching, `one row for ${id}`).toHaveLength(1);
      return matching[0]!;
    };
    expect(row(dash.id)).toMatch(/\bdash\b/);
    expect(row(dash.id)).toMatch(/\bjobs:read,jobs:write\b/);
    expect(row(worker.id)).toMatch(/\bworker-7\b/);
    expect(row(worker.id)).toMatch(/\bjobs:write\b/);
    expect(row(worker.id)).not.toContain('jobs:read');
    // Only acme's keys.
    expect(listed.stdout).not.toContain(elsewhere.id);
    expect(listed.stdout).not.toContain('not-acme');
    for (const { key } of [dash, worker, elsewhere]) {
      expect(listed.stdout + listed.stderr).not.toContain(key);
      expect(listed.stdout + listed.stderr).not.toContain(sha256(key));
      // Nor the part of the key after its shown prefix.
      expect(listed.stdout).not.toContain(key.slice(10));
    }
    // Creating never prints the hash either.
    expect(dash.before).not.toContain(sha256(dash.key));
  });

  it('revoke exits 0 and the key then gets 401; an unknown id exits 1 with a clear message', { timeout: 240_000 }, async () => {
    const db = await database();
    const doomed = created(await cli(db, 'keys', 'create', '--workspace', 'acme', '--name', 'doomed', '--scope', 'jobs:read', '--scope', 'jobs:write'));
    const kept = created(await cli(db, 'keys', 'create', '--workspace', 'acme', '--name', 'kept'));

    const first = await startTestApp({ database: db });
    try {
      expect((await graphql(first.url, JobsDocument, {}, doomed.key)).status).toBe(200);
    } finally {
      await first.close();
    }

    const revoked = await cli(db, 'keys', 'revoke', doomed.id);
    expect(revoked, revoked.stderr).toMatchObject({ code: 0, signal: null });
    expect(revoked.stdout).toContain(doomed.id);
    expect(revoked.stdout).not.toContain(doomed.key);
    expect(revoked.stdout).not.toContain(sha256(doomed.key));

    for (const id of [MISSING, 'not-a-uuid']) {
      const unknown = await cli(db, 'keys', 'revoke', id);
      expect(unknown, `revoke ${id}`).toMatchObject({ code: 1, signal: null });
      expect(unknown.stderr).toContain(`No API key with id "${id}"`);
      expect(unknown.stderr).not.toContain('Usage');
      expect(unknown.stderr).not.toMatch(/\n\s+at /);
    }

    const second = await startTestApp({ database: db });
    try {
      for (const result of [await graphql(second.url, JobsDocument, {}, doomed.key), await graphql(second.url, CreateJobDocument, { input }, doomed.key)]) {
        expect(result.status).toBe(401);
        expect(codesOf(result)).toEqual(['UNAUTHENTICATED']);
      }
      // Only that key: the other one of the workspace still works, and nothing was created.
      expect((await graphqlOk(second.url, JobsDocument, {}, kept.key)).jobs).toEqual([]);
      const stored = await second.app.apiKeys.list('acme');
      expect(stored.find((k) => k.id === doomed.id)?.revokedAt).toBeInstanceOf(Date);
      expect(stored.find((k) => k.id === kept.id)?.revokedAt).toBeNull();
    } finally {
      await second.close();
    }
  });

  it('a wrong command line exits 2 with usage on stderr and changes nothing', { timeout: 240_000 }, async () => {
    const db = await database();
    const cases: Array<[string[], RegExp]> = [
      [['keys', 'create'], /--workspace/],
      [['keys', 'create', '--name', 'dash', '--scope', 'jobs:read'], /--workspace/],
      [['keys', 'list'], /--workspace/],
      [['keys', 'create', '--workspace', 'bad-args', '--scope', 'jobs:admin'], /scope.*jobs:admin|jobs:admin.*scope/i],
      [['keys', 'create', '--workspace', 'bad-args', '--scope', 'jobs:read', '--scope', 'read'], /scope.*\bread\b/i],
      [['keys', 'rotate', '--workspace', 'bad-args'], /rotate/],
      [['keys'], /command/i],
      [['keys', 'revoke'], /revoke/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(db, ...args);
      expect(result, args.join(' ')).toMatchObject({ code: 2, signal: null });
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stderr, args.join(' ')).toContain('Usage:');
      expect(result.stderr, args.join(' ')).toContain('keys create --workspace');
      expect(result.stdout, args.join(' ')).not.toMatch(/jg_/);
    }
    // None of them created a workspace or a key.
    const listed = await cli(db, 'keys', 'list', '--workspace', 'bad-args');
    expect(listed).toMatchObject({ code: 1, signal: null });
    expect(listed.stderr).toContain('No workspace "bad-args"');
  });

  it(
    'webhooks: create prints the secret alone on the last line; list, disable, enable, rotate-secret, deliveries and delete work; bad input exits 1 or 2',
    { timeout: 240_000 },
    async () => {
      const db = await database();
      expect(await cli(db, 'keys', 'create', '--workspace', 'hooks')).toMatchObject({ code: 0 });
      const create = await cli(
        db,
        'webhooks',
        'create',
        '--workspace',
        'hooks',
        '--url',
        'https://hooks.example.com/in',
        '--event',
        'job.completed',
        '--event',
        'job.failed',
        '--competitor-id',
        'acme',
      );
      expect(create).toMatchObject({ code: 0, signal: null });
      const lines = create.stdout.trim().split('\n');
      const secret = lines.at(-1)!;
      expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
      expect(lines.slice(0, -1).join('\n')).not.toContain(secret);
      const id = /endpoint ([0-9a-f-]{36})/.exec(create.stdout)![1]!;

      const listed = await cli(db, 'webhooks', 'list', '--workspace', 'hooks');
      expect(listed.stdout).toMatch(new RegExp(`${id}\\s+https://hooks.example.com/in\\s+job.completed,job.failed\\s+competitor=acme\\s+enabled`));
      expect(listed.stdout).not.toContain('whsec_');
      expect(await cli(db, 'webhooks', 'disable', id)).toMatchObject({ code: 0 });
      expect((await cli(db, 'webhooks', 'list', '--workspace', 'hooks')).stdout).toContain('disabled: Disabled by an operator.');
      expect(await cli(db, 'webhooks', 'enable', id)).toMatchObject({ code: 0 });
      expect((await cli(db, 'webhooks', 'list', '--workspace', 'hooks')).stdout).toMatch(/\benabled\b/);
      const rotated = await cli(db, 'webhooks', 'rotate-secret', id);
      expect(rotated.stdout.trim().split('\n').at(-1)).toMatch(/^whsec_/);
      expect(rotated.stdout).not.toContain(secret);
      expect((await cli(db, 'webhooks', 'deliveries', id)).stdout).toContain('No deliveries');

      for (const [args, code, message] of [
        [['webhooks', 'create', '--workspace', 'hooks', '--url', 'http://hooks.example.com/in', '--event', 'job.completed'], 1, /https/],
        [['webhooks', 'create', '--workspace', 'hooks', '--url', 'https://10.0.0.1/in', '--event', 'job.completed'], 1, /private/],
        [['webhooks', 'create', '--workspace', 'hooks', '--url', 'https://hooks.example.com/in', '--event', 'job.finished'], 1, /Unknown event/],
        [['webhooks', 'create', '--workspace', 'nowhere', '--url', 'https://hooks.example.com/in', '--event', 'job.completed'], 1, /does not exist/],
        [['webhooks', 'create', '--workspace', 'hooks', '--event', 'job.completed'], 2, /--url/],
        [['webhooks', 'disable'], 2, /endpoint id/],
        [['webhooks', 'delete', '00000000-0000-4000-8000-000000000000'], 1, /does not exist/],
      ] as Array<[string[], number, RegExp]>) {
        const result = await cli(db, ...args);
        expect(result, args.join(' ')).toMatchObject({ code, signal: null });
        expect(result.stderr, args.join(' ')).toMatch(message);
      }
      expect(await cli(db, 'webhooks', 'delete', id)).toMatchObject({ code: 0 });
      expect((await cli(db, 'webhooks', 'list', '--workspace', 'hooks')).stdout).toContain('has no webhook endpoints');
    },
  );

  it.skipIf(dbKind !== 'embedded')(
    'starts at once after the server holding the data dir was killed (SIGKILL), its data intact',
    { timeout: 120_000 },
    async () => {
      const db = await database();
      const setup = await startTestApp({ database: db });
      const key = await setup.createKey('killed');
      const job = (await graphqlOk(setup.url, CreateJobDocument, { input }, key)).createJob;
      await setup.close();

      const first = await spawnGateway(db.env);
      first.child.kill('SIGKILL');
      await first.exited;
      // The lock's holder is gone: the next start takes it now, not once it has gone stale (10 s).
      const began = Date.now();
      const second = await spawnGateway(db.env);
      try {
        expect(Date.now() - began).toBeLessThan(8_000);
        expect((await graphqlOk(second.url, JobDocument, { id: job.id }, key)).job).toMatchObject({ id: job.id, displayTitle: input.displayTitle });
        // While this one lives, another process is still refused.
        const refused = await cli(db, 'keys', 'list', '--workspace', 'killed');
        expect(refused).toMatchObject({ code: 1, signal: null });
        expect(refused.stderr).toContain('in use');
      } finally {
        second.child.kill('SIGTERM');
        await second.exited;
      }
    },
  );

  it.skipIf(dbKind !== 'embedded')('refuses with exit 1 ("in use") while a server holds the data dir; the server goes on', { timeout: 240_000 }, async () => {
    const db = await database();
    const t = await startTestApp({ database: db });
    let stopped = false;
    try {
      const key = await t.createKey('held');
      const job = (await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob;

      for (const args of [
        ['keys', 'create', '--workspace', 'held', '--scope', 'jobs:write'],
        ['keys', 'list', '--workspace', 'held'],
      ]) {
        const refused = await cli(db, ...args);
        expect(refused, args.join(' ')).toMatchObject({ code: 1, signal: null });
        expect(refused.stderr).toContain('in use');
        expect(refused.stdout).not.toMatch(/jg_/);
      }

      // The server keeps serving, its data intact, and can still write.
      expect((await graphqlOk(t.url, JobsDocument, {}, key)).jobs.map(withoutCursor)).toEqual([withoutCursor(job)]);
      const later = (await graphqlOk(t.url, CreateJobDocument, { input }, key)).createJob;
      expect((await graphqlOk(t.url, JobsDocument, {}, key)).jobs.map((j) => j.id).sort()).toEqual([job.id, later.id].sort());
      expect((await t.app.apiKeys.list('held')).map((k) => k.scopes.length)).toEqual([3]);
      const health = await fetch(`${t.url}/healthz`);
      expect(await health.json()).toEqual({ status: 'ok', database: 'embedded' });

      // The refused runs left the server's lock alone: a third run is refused too.
      const again = await cli(db, 'keys', 'list', '--workspace', 'held');
      expect(again).toMatchObject({ code: 1, signal: null });
      expect(again.stderr).toContain('in use');

      await t.close();
      stopped = true;
      // Once the server is gone the CLI works on the same data, which holds everything.
      const listed = await cli(db, 'keys', 'list', '--workspace', 'held');
      expect(listed, listed.stderr).toMatchObject({ code: 0, signal: null });
      expect(listed.stdout.trimEnd().split('\n')).toHaveLength(2);
    } finally {
      if (!stopped) await t.close();
    }
  });

  it.skipIf(dbKind !== 'embedded')('a wrong command line exits 2 with usage even while a server holds the data dir', { timeout: 240_000 }, async () => {
    const db = await database();
    const t = await startTestApp({ database: db });
    try {
      for (const args of [
        ['keys', 'create'],
        ['keys', 'create', '--workspace', 'held', '--scope', 'jobs:admin'],
        ['keys', 'rotate'],
      ]) {
        const result = await cli(db, ...args);
        expect(result, `${args.join(' ')}: ${result.stderr}`).toMatchObject({ code: 2, signal: null });
        expect(result.stderr).toContain('Usage:');
      }
    } finally {
      await t.close();
    }
  });
});
