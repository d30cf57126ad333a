import fc from 'fast-check';
import { MessageType, stringifyMessage } from 'graphql-ws';
import { type RawData, WebSocket } from 'ws';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeDb } from '../../helpers/databases.js';
import { type TestApp, startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { oneStepJob } from '../../helpers/jobs.js';

/**
 * The multiplexer writes jobUpdated's `next` messages itself, beside graphql-ws (one serialization
 * per group, not per socket). Pinned here to the bytes graphql-ws's own `stringifyMessage` makes of
 * the same message, so that a graphql-ws upgrade that changes its framing fails this test instead
 * of breaking clients silently.
 */

let t: TestApp;
let key: string;
let workspaceId: string;
const sockets: WebSocket[] = [];
beforeAll(async () => {
  t = await startTestApp();
  key = await t.createKey('frames');
  workspaceId = await workspaceIdOf(t.app.apiKeys, key);
});
afterAll(() => {
  for (const socket of sockets) socket.terminate();
});

/** A graphql-ws socket that keeps every text frame as received, byte for byte. */
async function rawSocket(): Promise<{ frames: string[]; send: (message: object) => void }> {
  const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws');
  sockets.push(socket);
  const frames: string[] = [];
  socket.on('message', (data: RawData) => frames.push((data as Buffer).toString()));
  await new Promise<void>((resolve, reject) => socket.once('open', () => resolve()).once('error', reject));
  socket.send(stringifyMessage({ type: MessageType.ConnectionInit, payload: { apiKey: key } }));
  await expect.poll(() => frames.length).toBe(1);
  return { frames, send: (message) => socket.send(JSON.stringify(message)) };
}

const text = (maxLength: number) => fc.string({ maxLength, unit: 'binary' }).map((value) => value.replaceAll('\u0000', ''));

describeDb('hand-built jobUpdated frames', () => {
  it('are byte for byte what graphql-ws itself sends for the same message, whatever the id and the job (property)', async () => {
    const { frames, send } = await rawSocket();
    let subscription = 0;
    await fc.assert(
      fc.asyncProperty(
        // Client-chosen ids: any string graphql-ws accepts, quotes, escapes and non-ASCII included.
        fc.string({ minLength: 1, maxLength: 20, unit: 'binary' }),
        // Job text: anything PostgreSQL stores (no NUL), escapes and non-ASCII included.
        fc.record({ title: text(40), metadata: fc.dictionary(text(8), fc.oneof(text(12), fc.integer(), fc.boolean(), fc.constant(null))) }),
        async (id, { title, metadata }) => {
          // Unique per run: an id may be reused only once its operation completed.
          const operationId = `${subscription++}:${id}`;
          const job = await t.app.jobs.create(workspaceId, oneStepJob({ displayTitle: `job ${title}`, metadata }));
          const seen = frames.length;
          send({
            id: operationId,
            type: 'subscribe',
            payload: { query: `subscription { jobUpdated(id: "${job.id}", after: "0") { id displayTitle metadata steps { id key } changeCursor } }` },
          });
          await expect.poll(() => frames.length, { timeout: 10_000 }).toBeGreaterThan(seen);
          const raw = frames[seen]!;
          const message = JSON.parse(raw) as { id: string; type: string; payload: object };
          expect(message).toMatchObject({ id: operationId, type: 'next' });
          expect(raw).toBe(stringifyMessage({ id: message.id, type: MessageType.Next, payload: message.payload }));
          send({ id: operationId, type: 'complete' });
        },
      ),
      { numRuns: 25 },
    );
    // The premise: these went through the multiplexer, not through graphql-ws.
    expect(t.app.webSockets.multiplexer.executions).toBeGreaterThanOrEqual(25);
  });
});
