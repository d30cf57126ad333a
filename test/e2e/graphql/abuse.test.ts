import net from 'node:net';
import fc from 'fast-check';
import { print } from 'graphql';
import { beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, JobsDocument } from '../../../src/graphql/operations.generated.js';
import { describeDb } from '../../helpers/databases.js';
import { codesOf, graphqlOk, rest } from '../../helpers/http.js';
import { liveSubscriptions } from '../../helpers/metrics.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const steps = [{ id: 'collect', name: 'Collect' }];
const ALL_FIELDS =
  'id workspaceId competitorId type displayTitle status progress currentStep steps { id name status } startedAt completedAt metadata error updatedAt changeCursor';

/** POST /graphql with a raw body: the status, and the parsed body when it is JSON. */
async function post(url: string, body: string, key?: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key && { 'x-api-key': key }), ...headers },
    body,
  });
  const text = await response.text();
  let json: { data?: unknown; errors?: Array<{ message: string; extensions?: { code?: string } }> } | undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const query = (q: string, variables?: unknown) => JSON.stringify({ query: q, variables });

/** The first bytes of a (streaming) response, without waiting for its end. */
async function readSome(response: Response): Promise<string> {
  const reader = response.body!.getReader();
  const { value } = await Promise.race([reader.read(), new Promise<{ value: undefined }>((resolve) => setTimeout(() => resolve({ value: undefined }), 300))]);
  reader.releaseLock();
  return value ? new TextDecoder().decode(value) : '';
}
const aliases = (count: number, field: string) => `{ ${Array.from({ length: count }, (_, i) => `a${i}: ${field}`).join(' ')} }`;

/** What every refusal must look like: a 4xx or a coded GraphQL error, never a 5xx or INTERNAL_SERVER_ERROR. */
function expectClientError(result: Awaited<ReturnType<typeof post>>, code: string) {
  expect(result.status, result.text.slice(0, 300)).toBeLessThan(500);
  const got = (result.json?.errors ?? []).map((e) => e.extensions?.code);
  expect(got, result.text.slice(0, 300)).toContain(code);
  // Other rules of validation may object to the same document.
  for (const other of got) expect([code, 'GRAPHQL_VALIDATION_FAILED']).toContain(other);
}

describeDb('abuse resistance: documents, rates, connections and bad input', () => {
  let t: TestApp;
  let reader: string;
  let writer: string;

  beforeAll(async () => {
    t = await startTestApp({ captureLogs: true, env: { RATE_LIMIT_PER_KEY: '0' } });
    reader = await t.createKey('abuse-a', ['jobs:read']);
    writer = await t.createKey('abuse-a', ['jobs:read', 'jobs:write', 'jobs:cancel']);
    await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps } }, writer);
  });

  it('refuses alias, depth, token, directive and cost attacks with QUERY_TOO_COMPLEX before executing them', async () => {
    const attacks = [
      aliases(5_000, `jobs(limit: 200) { ${ALL_FIELDS} }`),
      aliases(16, 'jobs(limit: 1) { id }'),
      aliases(10, `jobs(limit: 200) { ${ALL_FIELDS} }`),
      `{ ${'... @include(if: true) { __typename } '.repeat(11)} }`,
      '{ __type(name: "Job") { fields { type { fields { type { fields { type { name } } } } } } } }',
      `{ __type(name: "Job") { ${'ofType { '.repeat(12)}name${' }'.repeat(12)} } }`,
    ];
    for (const attack of attacks) expectClientError(await post(t.url, query(attack), reader), 'QUERY_TOO_COMPLEX');
    // The limit's size comes from variables too.
    const viaVariables = `query($n: Int) { ${Array.from({ length: 10 }, (_, i) => `a${i}: jobs(limit: $n) { ${ALL_FIELDS} }`).join(' ')} }`;
    expectClientError(await post(t.url, query(viaVariables, { n: 200 }), reader), 'QUERY_TOO_COMPLEX');
    expect((await post(t.url, query(viaVariables, { n: 1 }), reader)).json?.errors).toBeUndefined();
    // What dashboards send stays well within the limits.
    expect((await post(t.url, query(`{ jobs(limit: 200) { ${ALL_FIELDS} } }`), reader)).json?.errors).toBeUndefined();
    expect((await post(t.url, query(print(JobsDocument), {}), reader)).json?.errors).toBeUndefined();
  });

  it('stops deep nesting and runaway literals at the parser (token limit), never a 500', async () => {
    for (const body of [
      query(`{ jobs { ${'steps { '.repeat(3_000)}id${' }'.repeat(3_000)} } }`),
      query(`{ job(id: ${'['.repeat(100_000)}) { id } }`),
      query(`{ job(id: "x") { ${'... on Job { '.repeat(2_000)}id${' }'.repeat(2_000)} } }`),
    ]) {
      expectClientError(await post(t.url, body, reader), 'QUERY_TOO_COMPLEX');
    }
  });

  it('answers a CORS preflight without a key (browsers never send one), and keeps ids of any shape apart over WebSockets', async () => {
    const preflight = await fetch(`${t.url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin: 'https://dashboard.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-api-key' },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBeTruthy();

    const socket = await TestSocket.open(t.url, { apiKey: writer });
    const ids = ['a', 'a\u0000b', 'q"\\u0000', 'x'.repeat(90)];
    for (const id of ids) socket.subscribe(id, 'subscription { jobUpdated { id } }');
    await expect.poll(async () => (await liveSubscriptions(t.url)).multiplexed).toBeGreaterThanOrEqual(ids.length);
    await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'ids', steps } }, writer);
    for (const id of ids) expect(await socket.waitForNexts(id, 1)).toHaveLength(1);
    // A duplicate of an active id closes with 4409, its reason naming the client's id only.
    socket.subscribe('x'.repeat(90), 'subscription { jobUpdated { id } }');
    const closed = await socket.waitForClose();
    expect(closed.code).toBe(4409);
    expect(closed.reason).not.toContain('\u0000');
    expect(t.logs.filter((entry) => entry.level >= 50)).toEqual([]);
  });

  it('refuses a document from a missing or unknown key before parsing it', async () => {
    // Not even valid GraphQL: a 401, not a syntax error, shows it was never parsed.
    for (const key of [undefined, 'jg_unknown']) {
      const result = await post(t.url, query(`{ ${'a: jobs { id } '.repeat(20_000)} `), key);
      expect(result.status).toBe(401);
      expect(result.json?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    }
  });

  it('checks the scopes of the whole operation before any field runs: a refused document writes nothing', async () => {
    const canceller = await t.createKey('abuse-a', ['jobs:read', 'jobs:cancel']);
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'mixed', steps } }, writer)).createJob;
    const mixed = `mutation { cancelJob(id: "${job.id}") { success } createJob(input: { type: "t", displayTitle: "d", steps: [{ id: "a", name: "A" }] }) { id } }`;
    const result = await post(t.url, query(mixed), canceller);
    expect(result.status).toBe(403);
    expect(result.json?.errors?.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    const after = await rest(t.url, 'GET', `/api/jobs/${job.id}`, canceller);
    expect((after.body as { job: { status: string } }).job.status).toBe('running');
  });

  it('answers generated bad input to every GraphQL argument and variable with BAD_USER_INPUT, never a 5xx, and changes nothing (property)', async () => {
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'target', steps } }, writer)).createJob;
    const deep = (depth: number) => JSON.parse('{"a":'.repeat(depth) + '1' + '}'.repeat(depth)) as unknown;
    const hostile = fc.oneof(
      fc.constantFrom(
        '\ud800',
        'a\udfffb',
        '\u0000',
        'x'.repeat(600),
        '',
        '   ',
        '9'.repeat(39),
        '92233720368547758080000000000000000000',
        '-1',
        '1e3',
        '[]',
        '{}',
      ),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.integer({ min: -1e9, max: 1e9 }),
      fc.double(),
      fc.constant(null),
      fc.constantFrom(deep(3_000), deep(40), { k: '\ud800' }, { ['\ud800']: 1 }, { big: 'x'.repeat(70_000) }, ['a'], 'string'),
    );
    const operations = [
      (v: unknown) => ({ query: 'mutation($v: JSON) { updateJobProgress(input: { id: "ID", metadata: $v }) { id } }', variables: { v } }),
      (v: unknown) => ({
        query: 'mutation($v: JSON) { createJob(input: { type: "t", displayTitle: "d", steps: [], metadata: $v }) { id } }',
        variables: { v },
      }),
      (v: unknown) => ({
        query: 'mutation($v: String!) { createJob(input: { type: $v, displayTitle: $v, steps: [{ id: $v, name: $v }] }) { id } }',
        variables: { v },
      }),
      (v: unknown) => ({ query: 'mutation($v: Int) { updateJobProgress(input: { id: "ID", progress: $v }) { id } }', variables: { v } }),
      (v: unknown) => ({ query: 'mutation($v: String!) { updateJobProgress(input: { id: "ID", stepId: $v, stepStatus: RUNNING }) { id } }', variables: { v } }),
      (v: unknown) => ({ query: 'mutation($v: String!) { failJob(id: "ID", error: $v) { id } }', variables: { v } }),
      (v: unknown) => ({
        query: 'mutation($v: Int) { createJob(input: { type: "t", displayTitle: "d", steps: [], heartbeatTimeoutMs: $v }) { id } }',
        variables: { v },
      }),
      (v: unknown) => ({ query: 'mutation($v: ID!) { heartbeat(id: $v) { id } }', variables: { v } }),
      (v: unknown) => ({ query: 'query($v: String) { jobs(type: $v, competitorId: $v) { id } }', variables: { v } }),
      (v: unknown) => ({ query: 'query($v: Int) { jobs(limit: $v) { id } }', variables: { v } }),
      (v: unknown) => ({ query: 'query($v: ID!) { job(id: $v) { id } }', variables: { v } }),
      (v: unknown) => ({ query: 'subscription($v: String) { jobUpdated(after: $v) { id } }', variables: { v } }),
    ];
    const before = (await rest(t.url, 'GET', `/api/jobs/${job.id}`, reader)).body;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: operations.length - 1 }), hostile, async (which, value) => {
        const body = operations[which]!(value);
        // The job must stay as it was: operations address ids that are no job's.
        const text = JSON.stringify({ ...body, query: body.query.replace('"ID"', JSON.stringify(`${job.id}-nope`)) });
        // A subscription is asked for as a stream (as JSON it would be refused before its arguments are read).
        const result = body.query.startsWith('subscription')
          ? await firstEvent(t.url, text, writer)
          : await post(t.url, text, writer, { accept: 'application/json' });
        expect(result.status, text.slice(0, 200)).toBeLessThan(500);
        const codes = [...result.text.matchAll(/"code":"([A-Z_]+)"/g)].map((match) => match[1]);
        for (const code of codes) expect(['BAD_USER_INPUT', 'NOT_FOUND', 'GRAPHQL_VALIDATION_FAILED'], text.slice(0, 200)).toContain(code);
        expect(result.text).not.toContain('INTERNAL_SERVER_ERROR');
      }),
      { numRuns: 150 },
    );
    // Bad input on the real job: refused, and the job is unchanged.
    for (const metadata of [deep(3_000), { s: '\ud800' }, { big: 'x'.repeat(70_000) }]) {
      const result = await post(
        t.url,
        query('mutation($id: ID!, $m: JSON) { updateJobProgress(input: { id: $id, metadata: $m }) { id } }', { id: job.id, m: metadata }),
        writer,
      );
      expect(codesOf(result.json ?? {})).toEqual(['BAD_USER_INPUT']);
    }
    // A cursor is at most a bigint transaction id and a bigint sequence value (see change-position.ts).
    const overRange = await post(t.url, query('subscription { jobUpdated(after: "92233720368547758080000000000000000000") { id } }'), reader, {
      accept: 'text/event-stream',
    });
    expect(overRange.text).toContain('BAD_USER_INPUT');
    expect((await rest(t.url, 'GET', `/api/jobs/${job.id}`, reader)).body).toEqual(before);
    expect(
      t.logs.filter((entry) => entry.level >= 50),
      JSON.stringify(t.logs.filter((entry) => entry.level >= 50)).slice(0, 500),
    ).toEqual([]);
  });

  it('answers generated requests to every REST route, parameter and header with a 4xx or 2xx, never a 5xx (property)', async () => {
    const segment = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('%', '%ZZ', '%00', '..', '%ED%A0%80', '%F0%9F', 'a'.repeat(2_000)));
    const encode = (text: string) => (text.isWellFormed() ? encodeURIComponent(text) : text.replace(/[^\x20-\x7e]/g, '%FF'));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH'),
        fc.constantFrom('/api/jobs', '/api/jobs/', '/api/jobs/ID', '/api/jobs/ID/cancel', '/api', '/api/jobs/ID/x'),
        segment,
        fc.dictionary(fc.constantFrom('status', 'limit', 'type', 'competitorId', 'after', 'x'), segment, { maxKeys: 4 }),
        fc.constantFrom<Record<string, string>>({}, { accept: 'text/html' }, { 'content-type': 'text/plain' }, { accept: '*/*;q=x' }, { range: 'bytes=0-1' }),
        async (method, path, id, params, headers) => {
          const search = Object.entries(params)
            .map(([name, value]) => `${name}=${encode(value)}`)
            .join('&');
          const target = `${path.replace('ID', encode(id))}${search ? `?${search}` : ''}`;
          const response = await fetch(`${t.url}${target}`, { method, headers: { 'x-api-key': reader, ...headers } });
          await response.arrayBuffer();
          expect(response.status, `${method} ${target}`).toBeLessThan(500);
        },
      ),
      { numRuns: 150 },
    );
    expect((await rest(t.url, 'GET', '/api/jobs', reader)).status).toBe(200);
    expect(t.logs.filter((entry) => entry.level >= 50)).toEqual([]);
  });

  it('answers generated GraphQL requests, every parameter over GET, JSON and form-encoded POST, with a 4xx or 2xx, never a 5xx, and logs no error (property)', async () => {
    const json = fc.oneof(
      fc.constantFrom('{', '[', '{"a":', 'null', '1', '"x"', '[]', '{}', '{"id":"x"}', '\ud800', '', '%7B', '{"persistedQuery":{"version":1}}'),
      fc.string({ maxLength: 20 }),
      fc.json({ maxDepth: 2 }),
    );
    const param = {
      query: fc.constantFrom('{ jobs { id } }', 'query($id: ID!) { job(id: $id) { id } }', '{', '', 'mutation { cancelJob(id: "x") { id } }', '{ __typename }'),
      variables: json,
      extensions: json,
      operationName: fc.oneof(fc.constantFrom('', 'A', '{'), fc.string({ maxLength: 10 })),
    };
    const encode = (text: string) => (text.isWellFormed() ? encodeURIComponent(text) : text.replace(/[^\x20-\x7e]/g, '%FF'));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST json', 'POST form'), fc.record(param, { requiredKeys: [] }), async (transport, params) => {
        const pairs = Object.entries(params)
          .map(([name, value]) => `${name}=${encode(value)}`)
          .join('&');
        const headers = { 'x-api-key': reader, accept: 'application/graphql-response+json' };
        const init: RequestInit =
          transport === 'GET'
            ? { headers }
            : transport === 'POST form'
              ? { method: 'POST', headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: pairs }
              : { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(params) };
        const response = await fetch(`${t.url}/graphql${transport === 'GET' ? `?${pairs}` : ''}`, init);
        const text = await response.text();
        expect(response.status, `${transport} ${pairs}`).toBeLessThan(500);
        expect(text).not.toContain('INTERNAL_SERVER_ERROR');
      }),
      { numRuns: 200 },
    );
    // The cases found by hand: malformed JSON in a GET's variables or extensions, as POST already was.
    for (const search of ['variables=%7B', 'extensions=%7B', 'variables=%5B1', 'variables=nope']) {
      const response = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ jobs { id } }')}&${search}`, { headers: { 'x-api-key': reader } });
      expect(response.status, search).toBe(400);
      expect(codesOf((await response.json()) as object), search).toEqual(['BAD_USER_INPUT']);
    }
    expect(
      t.logs.filter((entry) => entry.level >= 50),
      JSON.stringify(t.logs.filter((entry) => entry.level >= 50)).slice(0, 500),
    ).toEqual([]);
  });

  it('refuses an alias attack over WebSockets too, and keeps the socket', async () => {
    const socket = await TestSocket.open(t.url, { apiKey: reader });
    socket.subscribe('big', aliases(100, `jobs(limit: 200) { ${ALL_FIELDS} }`));
    const refused = await socket.waitFor((m) => m.id === 'big' && m.type === 'error');
    expect(refused.payload).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'QUERY_TOO_COMPLEX' }) })]);
    socket.subscribe('ok', '{ jobs(limit: 1) { id } }');
    await socket.waitFor((m) => m.id === 'ok' && m.type === 'next');
    socket.close();
  });
});

describeDb('response size, rate and connection limits', () => {
  it('replaces a response over MAX_RESPONSE_BYTES by RESPONSE_TOO_LARGE', async () => {
    const t = await startTestApp({ env: { MAX_RESPONSE_BYTES: '4096' } });
    const key = await t.createKey('big-responses');
    for (let i = 0; i < 4; i++) {
      await graphqlOk(t.url, CreateJobDocument, { input: { type: 'collect', displayTitle: 'x', steps, metadata: { blob: 'x'.repeat(1_500) } } }, key);
    }
    const big = await post(t.url, query('{ jobs { metadata } }'), key);
    expect(big.status).toBe(200);
    expect(big.json).toEqual({ data: null, errors: [expect.objectContaining({ extensions: { code: 'RESPONSE_TOO_LARGE' } })] });
    expect(big.text.length).toBeLessThan(4096);
    expect((await post(t.url, query('{ jobs { id } }'), key)).json?.errors).toBeUndefined();
    // The REST routes are capped alike, with their own status.
    const list = await rest(t.url, 'GET', '/api/jobs', key);
    expect(list.status).toBe(400);
    expect(list.body).toEqual({ error: { code: 'RESPONSE_TOO_LARGE', message: expect.any(String) } });
    // graphql-ws serializes its results itself: the same cap there.
    const socket = await TestSocket.open(t.url, { apiKey: key });
    socket.subscribe('q', '{ jobs { metadata } }');
    const next = await socket.waitFor((m) => m.id === 'q' && m.type === 'next');
    expect(next.payload).toEqual({ data: null, errors: [expect.objectContaining({ extensions: { code: 'RESPONSE_TOO_LARGE' } })] });
    socket.close();
  });

  it('limits each key to RATE_LIMIT_PER_KEY with a burst: 429 with Retry-After on REST and GraphQL, errors on WebSocket subscribes, other keys unaffected (property)', async () => {
    const t = await startTestApp({ env: { RATE_LIMIT_PER_KEY: '1', RATE_LIMIT_BURST: '5' } });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom('rest', 'graphql'), { minLength: 8, maxLength: 14 }), async (doors) => {
        const flooder = await t.createKey('flooder');
        const bystander = await t.createKey('bystander');
        const statuses: number[] = [];
        const started = performance.now();
        for (const door of doors) {
          const response =
            door === 'rest'
              ? await fetch(`${t.url}/api/jobs?limit=1`, { headers: { 'x-api-key': flooder } })
              : await fetch(`${t.url}/graphql`, {
                  method: 'POST',
                  headers: { 'content-type': 'application/json', 'x-api-key': flooder },
                  body: query('{ jobs(limit: 1) { id } }'),
                });
          const body = (await response.json()) as { error?: { code: string }; errors?: Array<{ extensions: { code: string } }> };
          statuses.push(response.status);
          if (response.status === 429) {
            expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
            expect(door === 'rest' ? body.error?.code : body.errors?.[0]?.extensions.code).toBe('RATE_LIMITED');
          }
        }
        // A burst of 5, then one token a second while the requests ran.
        const allowed = statuses.filter((s) => s === 200).length;
        const elapsedSeconds = (performance.now() - started) / 1000;
        expect(allowed).toBeGreaterThanOrEqual(5);
        expect(allowed).toBeLessThanOrEqual(5 + Math.ceil(elapsedSeconds));
        expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
        expect(statuses).toContain(429);
        expect((await rest(t.url, 'GET', '/api/jobs', bystander)).status).toBe(200);
      }),
      { numRuns: 5 },
    );
    const key = await t.createKey('ws-flooder');
    const socket = await TestSocket.open(t.url, { apiKey: key });
    for (let i = 0; i < 10; i++) socket.subscribe(`s${i}`, 'subscription { jobUpdated { id } }');
    const limited = await socket.waitFor((m) => m.type === 'error');
    expect(limited.payload).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'RATE_LIMITED' }) })]);
    expect(socket.closed).toBeUndefined();
    socket.close();
  });

  it('counts Server-Sent Events streams against MAX_CONNECTIONS_PER_KEY, as WebSockets, whatever the Accept header', async () => {
    const t = await startTestApp({ env: { MAX_CONNECTIONS_PER_KEY: '2' } });
    const key = await t.createKey('sse-cap');
    // yoga answers a subscription with Server-Sent Events for any of these.
    const open = (accept?: string) =>
      fetch(`${t.url}/graphql?query=${encodeURIComponent('subscription { jobUpdated { id } }')}`, {
        headers: { 'x-api-key': key, ...(accept !== undefined && { accept }) },
      });
    const first = await open('text/event-stream');
    const second = await open();
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(second.headers.get('content-type')).toContain('text/event-stream');
    for (const accept of ['text/event-stream', '*/*', 'TEXT/EVENT-STREAM', 'text/*', undefined]) {
      const refused = await open(accept);
      const text = await refused.text();
      expect(text, String(accept)).toContain('TOO_MANY_CONNECTIONS');
    }
    // A query is no stream: it never counts.
    expect((await post(t.url, query('{ jobs(limit: 1) { id } }'), key, { accept: 'text/event-stream' })).status).toBe(200);
    const socket = await TestSocket.open(t.url, { apiKey: key, ack: false });
    expect((await socket.waitForClose()).code).toBe(1013);
    await first.body!.cancel();
    await expect
      .poll(async () => {
        const again = await open('text/event-stream');
        const ok = again.headers.get('content-type')?.includes('text/event-stream') && !(await readSome(again)).includes('TOO_MANY_CONNECTIONS');
        await again.body?.cancel().catch(() => {});
        return ok;
      })
      .toBe(true);
    await second.body!.cancel();
  });

  it('cuts connections that never finish their headers, and keeps answering new ones at MAX_CONNECTIONS', async () => {
    const t = await startTestApp({ env: { MAX_CONNECTIONS: '20', HTTP_HEADERS_TIMEOUT_MS: '4000' } });
    const stalled = await Promise.all(
      Array.from(
        { length: 40 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(Number(new URL(t.url).port), '127.0.0.1', () => {
              socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ');
              socket.resume(); // read what the server sends, so that its close is seen
              resolve(socket);
            });
            socket.on('error', () => {});
            socket.once('error', reject);
          }),
      ),
    );
    const open = () => stalled.filter((socket) => !socket.closed && !socket.destroyed).length;
    // At the cap, each newer connection took the place of the oldest idle one at once, well before
    // the header timeout: 20 of the 40 are already gone.
    await expect.poll(open, { timeout: 2_000 }).toBe(20);
    // And the newest request takes the place of another.
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    // And the header timeout cuts every stalled one.
    await expect.poll(open, { timeout: 15_000 }).toBe(0);
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  });

  it('always delivers the 413 of an oversized upload (lingering close), with Node fetch, many times in a row', async () => {
    const t = await startTestApp({ env: { MAX_BODY_BYTES: '1048576' } });
    const key = await t.createKey('uploads');
    const body = 'x'.repeat(6 * 1024 * 1024);
    for (let i = 0; i < 30; i++) {
      const response = await fetch(`${t.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body });
      expect(response.status).toBe(413);
      expect(await response.json()).toEqual({ error: expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }) });
    }
  });
});

/**
 * A subscription over Server-Sent Events: its status and what it sent up to its first event, then
 * hung up (after 500 ms with no event: a live subscription with nothing to replay).
 */
async function firstEvent(url: string, body: string, key: string): Promise<{ status: number; text: string }> {
  const controller = new AbortController();
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-api-key': key },
    body,
    signal: controller.signal,
  });
  const timer = setTimeout(() => controller.abort(), 500);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      text += decoder.decode(chunk.value, { stream: true });
      if (text.includes('\n\n')) break;
    }
  } catch {
    // Hung up by the timer.
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return { status: response.status, text };
}
