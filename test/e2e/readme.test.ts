import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { parse, validate, type OperationDefinitionNode } from 'graphql';
import { beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../../src/graphql/schema.js';
import { describeDb, freshDatabase } from '../helpers/databases.js';
import { type TestApp, startTestApp } from '../helpers/test-app.js';
import { readAllDocs } from '../helpers/docs.js';
import { freePort } from '../helpers/free-port.js';

const run = promisify(execFile);

// The README's examples and those of docs/ (every operation is shown in docs/api.md).
const readme = await readAllDocs();
const blocks = (lang: string) => [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);

/** The README's GraphQL examples, by operation name. */
const examples = new Map(
  blocks('graphql').map((source) => {
    const operation = parse(source).definitions[0] as OperationDefinitionNode;
    return [operation.name!.value, source] as const;
  }),
);

/** The README's curl commands (backslash continuations joined), pointed at a test server. */
const allCurls = blocks('sh')
  .flatMap((block) => block.replace(/\\\n\s*/g, '').split('\n'))
  .filter((line) => line.startsWith('curl '));
const curls = allCurls.filter((line) => !line.includes('text/event-stream'));
const streamingCurls = allCurls.filter((line) => line.includes('text/event-stream'));

describe('README', () => {
  it('shows a GraphQL example for every query and mutation, each valid against the schema', () => {
    const operations = [...Object.keys(schema.getQueryType()!.getFields()), ...Object.keys(schema.getMutationType()!.getFields())];
    const shown = [...examples.values()].join('\n');
    for (const field of operations) expect(shown, `no example uses ${field}`).toMatch(new RegExp(`\\b${field}\\s*[({]`));
    for (const [name, source] of examples) expect(validate(schema, parse(source)), name).toEqual([]);
  });
});

describeDb('README examples against a running gateway', () => {
  let t: TestApp;
  let key: string;

  beforeAll(async () => {
    // The examples' scopes: a worker's and a dashboard's, and webhooks:manage for the webhook ones.
    t = await startTestApp();
    key = await t.createKey('readme', ['jobs:read', 'jobs:cancel', 'jobs:write', 'webhooks:manage']);
  });

  async function send(name: string, variables: Record<string, unknown> = {}) {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ query: examples.get(name), variables }),
    });
    const body = (await response.json()) as { data?: Record<string, Record<string, unknown>>; errors?: unknown };
    expect(body.errors, name).toBeUndefined();
    return body.data!;
  }

  it('every GraphQL example runs without errors, in a worker and dashboard order', async () => {
    const { createJob } = await send('CreateJob');
    const id = createJob!.id as string;
    expect((await send('UpdateJobProgress', { id })).updateJobProgress).toMatchObject({ progress: 50, currentStep: 'Processing Intel' });
    expect((await send('Jobs')).jobs).toEqual(expect.arrayContaining([expect.objectContaining({ id })]));
    expect((await send('Job', { id })).job).toMatchObject({ id, status: 'RUNNING' });
    expect((await send('Viewer')).viewer).toEqual({ scopes: ['jobs:read', 'jobs:cancel', 'jobs:write', 'webhooks:manage'] });
    expect((await send('CompleteJob', { id })).completeJob).toMatchObject({ status: 'COMPLETED', progress: 100 });
    const second = (await send('CreateJob')).createJob!.id as string;
    expect((await send('FailJob', { id: second })).failJob).toMatchObject({ status: 'FAILED', error: 'Scraper timed out' });
    const third = (await send('CreateJob')).createJob!.id as string;
    expect((await send('CancelJob', { id: third })).cancelJob).toMatchObject({ success: true, job: { status: 'FAILED', currentStep: 'Cancelled' } });
  });

  it('every curl example works as written', async () => {
    expect(curls.length).toBeGreaterThanOrEqual(4);
    const { createJob } = await send('CreateJob');
    const env = { ...process.env, KEY: key, JOB_ID: createJob!.id as string };
    const outputs: unknown[] = [];
    for (const curl of curls) {
      const { stdout } = await run('bash', ['-c', curl.replaceAll('http://127.0.0.1:4000', t.url)], { env, timeout: 20_000 });
      outputs.push(JSON.parse(stdout));
    }
    expect(outputs).toEqual(
      expect.arrayContaining([
        { jobs: expect.arrayContaining([expect.objectContaining({ id: createJob!.id, status: 'running' })]), nextCursor: null },
        { job: expect.objectContaining({ id: createJob!.id }) },
        { success: true, job: { id: createJob!.id, status: 'failed', currentStep: 'Cancelled' } },
        { data: { job: expect.objectContaining({ id: createJob!.id }) } },
        { token: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/), expiresAt: expect.any(String) },
        { data: { createWebhookEndpoint: { secret: expect.stringMatching(/^whsec_/), endpoint: { id: expect.any(String) } } } },
      ]),
    );
  });

  it('every webhook example runs as written, one after the other', async () => {
    const operation = async (block: string, operationName: string, variables: Record<string, unknown> = {}) => {
      const response = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key },
        body: JSON.stringify({ query: examples.get(block), operationName, variables }),
      });
      const body = (await response.json()) as { data?: Record<string, unknown>; errors?: unknown };
      expect(body.errors, operationName).toBeUndefined();
      return body.data!;
    };
    const { createWebhookEndpoint } = (await operation('CreateWebhookEndpoint', 'CreateWebhookEndpoint')) as {
      createWebhookEndpoint: { endpoint: { id: string } };
    };
    const id = createWebhookEndpoint.endpoint.id;
    expect(await operation('WebhookEndpoints', 'WebhookEndpoints')).toMatchObject({
      webhookEndpoints: expect.arrayContaining([expect.objectContaining({ id })]),
    });
    expect(await operation('UpdateWebhookEndpoint', 'UpdateWebhookEndpoint', { id })).toMatchObject({
      updateWebhookEndpoint: { id, events: ['job.created', 'job.completed', 'job.failed'], enabled: true },
    });
    // A job of the endpoint's competitor: its creation is recorded as a delivery (whose attempt fails
    // here, with no network: hooks.example.com does not resolve).
    await send('CreateJob');
    const deliveries = async () =>
      ((await operation('WebhookEndpoints', 'WebhookDeliveries', { endpointId: id })) as { webhookDeliveries: Array<{ id: string; eventType: string }> })
        .webhookDeliveries;
    await expect.poll(deliveries).toEqual([expect.objectContaining({ eventType: 'job.created' })]);
    const [delivery] = await deliveries();
    expect(await operation('UpdateWebhookEndpoint', 'RedeliverWebhook', { deliveryId: delivery!.id })).toMatchObject({
      redeliverWebhook: { id: delivery!.id },
    });
    expect(await operation('UpdateWebhookEndpoint', 'RotateWebhookSecret', { id })).toMatchObject({
      rotateWebhookSecret: { secret: expect.stringMatching(/^whsec_/) },
    });
    expect(await operation('UpdateWebhookEndpoint', 'DeleteWebhookEndpoint', { id })).toEqual({ deleteWebhookEndpoint: true });
  });

  it('the webhook receiver works as written: it verifies, and prints each event once', async () => {
    const [receiver] = blocks('js').filter((block) => block.includes('standardwebhooks'));
    expect(receiver).toBeDefined();
    const local = await startTestApp({ env: { WEBHOOK_ALLOW_PRIVATE: 'true' } });
    const manager = await local.createKey('readme-hooks', ['webhooks:manage', 'jobs:write']);
    const port = await freePort();
    const endpoint = async (secretOf: 'own' | 'other') => {
      const { data } = (await (
        await fetch(`${local.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': manager },
          body: JSON.stringify({
            query: `mutation { createWebhookEndpoint(input: { url: "http://127.0.0.1:${port}/${secretOf}", events: ["job.completed"] }) { secret } }`,
          }),
        })
      ).json()) as { data: { createWebhookEndpoint: { secret: string } } };
      return data.createWebhookEndpoint.secret;
    };
    const secret = await endpoint('own');
    await endpoint('other'); // signed with another secret: the receiver refuses it (401), and it is retried
    // Run from the repository, where `standardwebhooks` resolves, as the README's reader has it installed.
    const child = spawn(process.execPath, ['--input-type=module', '-e', receiver!], {
      env: { ...process.env, WEBHOOK_SECRET: secret, PORT: String(port) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      const {
        data: { createJob },
      } = (await (
        await fetch(`${local.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': manager },
          body: JSON.stringify({ query: 'mutation { createJob(input: { type: "collect", displayTitle: "A", steps: [{ id: "a", name: "A" }] }) { id } }' }),
        })
      ).json()) as { data: { createJob: { id: string } } };
      const jobId = createJob.id;
      // The receiver may start listening after the first attempt: the retries reach it.
      await fetch(`${local.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': manager },
        body: JSON.stringify({ query: `mutation { completeJob(id: "${jobId}") { id } }` }),
      });
      await expect.poll(() => output, { timeout: 30_000 }).toContain(`job.completed ${jobId} completed`);
      // Once, though the endpoint signed with another secret was refused and is being retried.
      expect(
        output
          .split('\n')
          .filter(Boolean)
          .map((line) => line.trim()),
      ).toEqual([`job.completed ${jobId} completed`]);
    } finally {
      child.kill();
    }
  });

  it('the Server-Sent Events curl streams job updates as written', async () => {
    expect(streamingCurls).toHaveLength(1);
    const { createJob } = await send('CreateJob');
    const curl = spawn('bash', ['-c', streamingCurls[0]!.replaceAll('http://127.0.0.1:4000', t.url)], {
      env: { ...process.env, KEY: key },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    curl.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      // The stream has no `after`: keep moving the job until one of its states comes through.
      let progress = 0;
      while (!output.includes(`"id":"${String(createJob!.id)}"`)) {
        expect(progress, 'no update arrived over SSE').toBeLessThan(100);
        progress++;
        await send('UpdateJobProgress', { id: createJob!.id });
        // Until the stream is live a change sends nothing; then the next one arrives.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 250);
          curl.stdout.once('data', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      expect(output).toMatch(/event: next\ndata: \{"data":\{"jobUpdated":\{"id":"[0-9a-f-]{36}","status":"RUNNING","progress":\d+,"changeCursor":"\d+"\}\}\}/);
    } finally {
      curl.kill();
    }
  });

  it('the polling loop and the subscription that replaces it both work as written, side by side', async () => {
    const [polling, subscribed] = blocks('bash');
    expect(polling).toContain('while sleep 2');
    expect(subscribed).toContain('text/event-stream');
    const { createJob } = await send('CreateJob');
    const id = createJob!.id as string;
    const env = { ...process.env, KEY: key, JOB_ID: id };
    const start = (script: string) => {
      const child = spawn('bash', ['-c', script.replaceAll('http://127.0.0.1:4000', t.url)], { env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      return { output: () => output, stop: () => process.kill(-child.pid!, 'SIGTERM') };
    };
    const poller = start(polling!);
    const subscriber = start(subscribed!);
    try {
      // `after: "0"`: the stream opens with the job's state now, before the job changes at all.
      for (let i = 0; !subscriber.output().includes('event: next'); i++) {
        expect(i, "the job's current state did not arrive unasked").toBeLessThan(80);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(subscriber.output()).toMatch(
        /event: next\ndata: \{"data":\{"jobUpdated":\{"status":"RUNNING","progress":0,"currentStep":"Collecting Intel","changeCursor":"\d+"\}\}\}/,
      );
      // Move the job until the subscription has delivered a state, and the loop has polled one.
      for (let i = 0; !subscriber.output().includes('"progress":50') || !poller.output().includes(`"id":"${id}"`); i++) {
        expect(i, 'no state arrived over one of the two').toBeLessThan(60);
        if (i % 4 === 0 && !subscriber.output().includes('"progress":50')) await send('UpdateJobProgress', { id });
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(JSON.parse(poller.output().trim().split('\n')[0]!)).toMatchObject({ job: { id, status: 'running' } });
      expect(subscriber.output()).toMatch(
        /event: next\ndata: \{"data":\{"jobUpdated":\{"status":"RUNNING","progress":50,"currentStep":"Processing Intel","changeCursor":"\d+"\}\}\}/,
      );
    } finally {
      poller.stop();
      subscriber.stop();
    }
  });

  it('the key commands work as written and print the key on the last line', async () => {
    const commands = blocks('sh')
      .flatMap((block) => block.split('\n'))
      .filter((line) => /^npx jobs-gateway keys create --workspace demo/.test(line));
    expect(commands.length).toBeGreaterThan(0);
    const database = await freshDatabase();
    try {
      for (const command of commands) {
        const { stdout } = await run('bash', ['-c', command], { env: { ...process.env, ...database.env }, timeout: 60_000 });
        expect(stdout.trim().split('\n').at(-1)).toMatch(/^jg_[A-Za-z0-9_-]{43}$/);
      }
    } finally {
      await database.drop();
    }
  });
});
