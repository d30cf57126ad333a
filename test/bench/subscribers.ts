import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { serveParent } from './ipc.js';

// A process of N idle dashboards: raw WebSocket clients that speak graphql-transport-ws (or
// nothing, against the bare ceiling server), count what they receive and, when asked, note when
// each state (by job and updatedAt) arrived.

const sockets: WebSocket[] = [];
let messages = 0;
let bytes = 0;
let tracking = false;
const receipts = new Map<string, number[]>();
const CURSOR = /"changeCursor":"(\d+)"/;
const JOB = /"jobUpdated":\{"id":"([^"]+)"/;
const UPDATED_AT = /"updatedAt":"([^"]+)"/;
/** With `newest` on (the soak), each socket's newest cursor per job, to check that final states arrived. */
let keepNewest = false;
const newest = new Map<WebSocket, Map<string, bigint>>();
/** The key each socket subscribed with (its workspace's). */
const keyOf = new Map<WebSocket, string>();

function noteNewest(socket: WebSocket, data: Buffer): void {
  const text = data.toString('latin1');
  const job = JOB.exec(text)?.[1];
  const cursor = CURSOR.exec(text)?.[1];
  if (!job || !cursor) return;
  let jobs = newest.get(socket);
  if (!jobs) newest.set(socket, (jobs = new Map()));
  const position = BigInt(cursor);
  if ((jobs.get(job) ?? -1n) < position) jobs.set(job, position);
}

function onMessage(data: Buffer): void {
  messages++;
  bytes += data.length;
  if (!tracking) return;
  const text = data.toString('latin1');
  const job = JOB.exec(text)?.[1];
  const updatedAt = UPDATED_AT.exec(text)?.[1];
  if (!job || !updatedAt) return;
  // The same key as the bench's stateKey (load.ts).
  const state = `${job}@${updatedAt}`;
  const now = performance.timeOrigin + performance.now();
  const list = receipts.get(state);
  if (list) list.push(now);
  else receipts.set(state, [now]);
}

async function openOne(url: string, protocol: 'graphql-ws' | 'raw', apiKey: string | undefined, subscribe: Record<string, unknown> | undefined): Promise<void> {
  const socket = new WebSocket(url, protocol === 'graphql-ws' ? 'graphql-transport-ws' : undefined, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  if (protocol === 'graphql-ws') {
    const acked = new Promise<void>((resolve, reject) => {
      socket.once('message', (data: Buffer) => (String(data).includes('connection_ack') ? resolve() : reject(new Error(String(data)))));
      socket.once('close', (code) => reject(new Error(`closed ${code}`)));
    });
    socket.send(JSON.stringify({ type: 'connection_init', payload: { apiKey } }));
    await acked;
    socket.on('message', (data: Buffer) => {
      // Answer graphql-ws pings so keepalive does not drop idle dashboards.
      if (data.length < 40 && data.toString().includes('"ping"')) socket.send('{"type":"pong"}');
      else {
        onMessage(data);
        if (keepNewest) noteNewest(socket, data);
      }
    });
    if (subscribe) socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: subscribe }));
  } else {
    socket.on('message', onMessage);
  }
  sockets.push(socket);
  if (apiKey) keyOf.set(socket, apiKey);
}

serveParent(
  {
    open: async (m) => {
      const count = m.count as number;
      const parallel = 100;
      let started = 0;
      const workers = Array.from({ length: Math.min(parallel, count) }, async () => {
        while (started < count) {
          started++;
          await openOne(
            m.url as string,
            m.protocol as 'graphql-ws' | 'raw',
            m.apiKey as string | undefined,
            m.subscribe as Record<string, unknown> | undefined,
          );
        }
      });
      await Promise.all(workers);
      return sockets.length;
    },
    reset: () => {
      messages = 0;
      bytes = 0;
      receipts.clear();
      return true;
    },
    stats: () => ({ messages, bytes, sockets: sockets.length }),
    track: (m) => {
      tracking = m.on as boolean;
      return true;
    },
    receipts: () => Object.fromEntries(receipts),
    newest: (m) => {
      keepNewest = m.on as boolean;
      newest.clear();
      return true;
    },
    /**
     * Against the database's cursor per job (`expected`, or `byKey`: per key, for sockets of several
     * workspaces): the (socket, job) pairs whose newest state is not it, and the sockets closed.
     */
    checkFinal: (m) => {
      let missing = 0;
      let pairs = 0;
      // Once per key, not once per socket (thousands of sockets share a workspace).
      const byKey = new Map(Object.entries((m.byKey ?? {}) as Record<string, Record<string, string>>).map(([key, cursors]) => [key, Object.entries(cursors)]));
      const fallback = Object.entries((m.expected ?? {}) as Record<string, string>);
      for (const socket of sockets) {
        // `openOnly`: sockets of an instance that was killed on purpose are not counted.
        if (m.openOnly && socket.readyState !== WebSocket.OPEN) continue;
        const expected = byKey.get(keyOf.get(socket) ?? '') ?? fallback;
        const jobs = newest.get(socket);
        pairs += expected.length;
        for (const [job, cursor] of expected) if (jobs?.get(job) !== BigInt(cursor)) missing++;
      }
      return { missing, pairs, closed: sockets.filter((socket) => socket.readyState !== WebSocket.OPEN).length };
    },
    closeAll: async () => {
      keyOf.clear();
      await Promise.all(
        sockets.splice(0).map(
          (socket) =>
            new Promise<void>((resolve) => {
              if (socket.readyState === WebSocket.CLOSED) return resolve();
              socket.once('close', () => resolve());
              socket.close(1000);
              setTimeout(() => {
                socket.terminate();
                resolve();
              }, 2_000).unref();
            }),
        ),
      );
      return true;
    },
  },
  () => {
    for (const socket of sockets) socket.terminate();
  },
);
