import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { serveParent } from './ipc.js';

// A process of N idle dashboards: raw WebSocket clients that speak graphql-transport-ws (or
// nothing, against the bare ceiling server), count what they receive and, when asked, note when
// each state (by changeCursor) arrived.

const sockets: WebSocket[] = [];
let messages = 0;
let bytes = 0;
let tracking = false;
const receipts = new Map<string, number[]>();
const CURSOR = /"changeCursor":"(\d+)"/;

function onMessage(data: Buffer): void {
  messages++;
  bytes += data.length;
  if (!tracking) return;
  const cursor = CURSOR.exec(data.toString('latin1'))?.[1];
  if (!cursor) return;
  const now = performance.timeOrigin + performance.now();
  const list = receipts.get(cursor);
  if (list) list.push(now);
  else receipts.set(cursor, [now]);
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
      else onMessage(data);
    });
    if (subscribe) socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: subscribe }));
  } else {
    socket.on('message', onMessage);
  }
  sockets.push(socket);
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
          await openOne(m.url as string, m.protocol as 'graphql-ws' | 'raw', m.apiKey as string | undefined, m.subscribe as Record<string, unknown> | undefined);
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
    closeAll: async () => {
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
