import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDatabase } from '../../../src/db/database.js';
import { describeDb, dbKind, freshDatabase } from '../../helpers/databases.js';
import { spawnGateway } from '../../helpers/gateway-process.js';
import { CreateJobDocument, JobsDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { codesOf, graphql, graphqlOk, halfSentQuery, rest } from '../../helpers/http.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { repoRoot } from '../../helpers/paths.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { TestSocket } from '../../helpers/ws-client.js';

const run = promisify(execFile);
const noStackTrace = (text: string) => expect(text).not.toMatch(/\n\s+at |node_modules|\.ts:\d+/);

describeDb('the HTTP server', () => {
  let t: TestApp;
  let key: string;

  beforeAll(async () => {
    t = await startTestApp({ env: { MAX_BODY_BYTES: '2048' } });
    key = await t.createKey('server');
  });

  it('answers /healthz with 200 while the database answers', async () => {
    const res = await rest(t.url, 'GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok', database: dbKind });
  });

  it('refuses bodies over MAX_BODY_BYTES with 413, and chunked bodies without a length with 411', async () => {
    const big = JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(4096) } });
    const graphqlRes = await fetch(`${t.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: big });
    expect(graphqlRes.status).toBe(413);
    expect(await graphqlRes.json()).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: expect.stringContaining('2048') } });

    const restRes = await fetch(`${t.url}/api/jobs/00000000-0000-4000-8000-000000000000/cancel`, { method: 'POST', headers: { 'x-api-key': key }, body: big });
    expect(restRes.status).toBe(413);

    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"query":"{ __typename }"}'));
        controller.close();
      },
    });
    const chunked = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(411);

    // A body within the limit still works.
    const small = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: '{"query":"{ __typename }"}',
    });
    expect(await small.json()).toEqual({ data: { __typename: 'Query' } });
  });

  it('answers malformed requests with 4xx JSON and never a stack trace', async () => {
    // GraphQL over HTTP: with `accept: application/graphql-response+json` a request error is a 400;
    // legacy `application/json` clients get it with 200, as the spec requires.
    const json = { 'content-type': 'application/json', 'x-api-key': key };
    const strict = { ...json, accept: 'application/graphql-response+json' };
    const cases: Array<[string, RequestInit & { body?: string }, number]> = [
      ['/graphql', { method: 'POST', headers: json, body: '{"query": ' }, 400],
      ['/graphql', { method: 'POST', headers: strict, body: '{"query": "{ jobs { nope } }"}' }, 400],
      ['/graphql', { method: 'POST', headers: json, body: '[1,2,3]' }, 400],
      ['/graphql', { method: 'POST', headers: strict, body: '{"query": "{"}' }, 400],
      // Without a key nothing is parsed: 401 whatever the body.
      ['/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": ' }, 401],
      ['/nowhere', { method: 'GET' }, 404],
      ['/api/jobs?limit=%ZZ', { method: 'GET', headers: { 'x-api-key': key } }, 400],
    ];
    for (const [path, init, status] of cases) {
      const res = await fetch(`${t.url}${path}`, init);
      const text = await res.text();
      expect(res.status, `${path} ${String(init.body)}`).toBe(status);
      expect(() => JSON.parse(text)).not.toThrow();
      noStackTrace(text);
      expect(text).not.toContain(key);
    }
  });

  it('answers a request target that is no URL with 400, and goes on serving', async () => {
    const { port } = new URL(t.url);
    for (const target of ['http://[', '//[/graphql', 'http://:99999/api/jobs']) {
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let text = '';
        socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(raw.split('\r\n')[0], target).toBe('HTTP/1.1 400 Bad Request');
      expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({
        error: { code: 'BAD_USER_INPUT', message: 'The request target is not a valid URL.' },
      });
    }
    expect((await rest(t.url, 'GET', '/healthz')).status).toBe(200);
  });

  it('answers /readyz 200 while it should get work, and 503 "draining" from the first moment of shutdown, while /healthz still answers 200 and SSE streams end at once', async () => {
    const t = await startTestApp({ env: { SHUTDOWN_TIMEOUT_MS: '3000' } });
    const key = await t.createKey('ready');
    expect(await rest(t.url, 'GET', '/readyz')).toMatchObject({ status: 200, body: { status: 'ready', database: dbKind } });
    // A peer that stops reading holds the WebSocket part of shutdown until SHUTDOWN_TIMEOUT_MS.
    const socket = await TestSocket.open(t.url, { apiKey: key });
    (socket.socket as unknown as { _socket: net.Socket })._socket.pause();
    const events = await openEventStream(t.url, key, 'subscription { jobUpdated { id } }');
    const began = Date.now();
    const closed = t.app.close();
    const during = await rest(t.url, 'GET', '/readyz');
    expect(during).toMatchObject({ status: 503, body: { status: 'draining' } });
    // SSE streams end at once, not after the paused WebSocket peer's SHUTDOWN_TIMEOUT_MS.
    await events.rest();
    expect(Date.now() - began).toBeLessThan(2_000);
    // Alive all the same: liveness is /healthz's question, not readiness.
    expect((await rest(t.url, 'GET', '/healthz')).status).toBe(200);
    await closed;
  });

  it('answers 503 without a stack trace when the database is away', async () => {
    const away = await startTestApp();
    const awayKey = await away.createKey('away');
    await away.app.database.close();
    const health = await rest(away.url, 'GET', '/healthz');
    expect(health.status).toBe(503);
    expect(health.body).toEqual({ status: 'unavailable', database: dbKind });
    const list = await fetch(`${away.url}/api/jobs`, { headers: { 'x-api-key': awayKey } });
    expect(list.status).toBe(503);
    const text = await list.text();
    expect(JSON.parse(text)).toEqual({ error: { code: 'SERVICE_UNAVAILABLE', message: expect.any(String) } });
    noStackTrace(text);
  });

  it('answers 503 SERVICE_UNAVAILABLE, shaped for each route, while a known key is still remembered and the database is away', async () => {
    const away = await startTestApp();
    const key = await away.createKey('away-known');
    const job = (await graphqlOk(away.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps: [] } }, key)).createJob;
    expect((await rest(away.url, 'GET', '/api/jobs', key)).status).toBe(200); // the key is remembered now
    await away.app.database.close();

    // The response cache answers the list it has until the change feed finds the database gone
    // (its next read, within FEED_CATCH_UP_INTERVAL_MS); from then on, what the database would.
    const list = async () => {
      const response = await fetch(`${away.url}/api/jobs`, { headers: { 'x-api-key': key } });
      return { status: response.status, text: await response.text() };
    };
    await expect.poll(async () => (await list()).status, { timeout: 5_000 }).toBe(503);
    const { status, text: listText } = await list();
    expect([status, JSON.parse(listText)]).toEqual([503, { error: { code: 'SERVICE_UNAVAILABLE', message: expect.any(String) } }]);
    noStackTrace(listText);
    for (const response of [
      await graphql(away.url, JobsDocument, {}, key),
      await graphql(away.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 5 } }, key),
    ]) {
      expect(response.status).toBe(503);
      expect(codesOf(response)).toEqual(['SERVICE_UNAVAILABLE']);
      noStackTrace(JSON.stringify(response));
    }
  });
});

describeDb('the gateway process', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it('on SIGTERM stops accepting, finishes the request in flight, closes the database and exits 0', async () => {
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    const seed = await startTestApp({ database });
    const sigtermKey = await seed.createKey('sigterm');
    await seed.close();
    const gateway = await spawnGateway(database.env);
    cleanups.push(() => {
      if (gateway.child.exitCode === null) gateway.child.kill('SIGKILL');
    });

    // A request whose body is only half sent is in flight when the signal arrives.
    const inFlight = await halfSentQuery(gateway.url, sigtermKey);
    await gateway.waitForLog(/^request$/);

    gateway.child.kill('SIGTERM');
    await gateway.waitForLog(/shutting down/);

    // No new connections once shutting down.
    await expect(fetch(`${gateway.url}/healthz`)).rejects.toThrow();

    const response = await inFlight.finish();
    expect(response).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(response).toContain('{"data":{"__typename":"Query"}}');

    expect(await gateway.exited).toBe(0);
    await gateway.waitForLog(/^stopped$/);

    // The database was closed cleanly: the embedded data dir is free to open again at once.
    if (database.env.DATA_DIR) {
      const reopened = await openDatabase({ dataDir: database.env.DATA_DIR });
      await reopened.close();
    }
  });

  it("prints where it listens and, while no key exists, the README's two key commands for its own database", { timeout: 90_000 }, async () => {
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    const gateway = await spawnGateway({ ...database.env, LOG_LEVEL: 'info' });
    const hint = String((await gateway.waitForLog(/No API key exists yet/)).msg);
    const listening = gateway.lines.map((l) => JSON.parse(l) as { msg: string }).find((l) => l.msg.includes('listening on'));
    expect(listening?.msg).toContain(gateway.url);
    gateway.child.kill('SIGINT');
    expect(await gateway.exited).toBe(0);

    // The README's dashboard and worker keys, on the data directory this server used (not ./data).
    const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
    const suggested = readme.split('\n').filter((line) => line.startsWith('npx jobs-gateway keys create --workspace demo'));
    expect(suggested).toHaveLength(2);
    const commands = hint.slice(hint.indexOf(' with: ') + ' with: '.length);
    expect(commands).toBe(suggested.map((command) => (database.env.DATA_DIR ? `DATA_DIR=${database.env.DATA_DIR} ${command}` : command)).join(' && '));
    // The embedded database is one process's: the hint says to stop the server first.
    expect(hint.includes('stop this server (Ctrl+C), then')).toBe(dbKind === 'embedded');
    // Run as printed (on the embedded database, where it lives comes from the command alone), they make the two keys.
    const env: NodeJS.ProcessEnv = { ...process.env, ...database.env };
    delete env.DATA_DIR;
    await run('bash', ['-c', commands], { cwd: repoRoot, env, timeout: 60_000 });
    const t = await startTestApp({ database });
    expect(await t.app.apiKeys.countActive()).toBe(2);
    await t.close();
  });
});
