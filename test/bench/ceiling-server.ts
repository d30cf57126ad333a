import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { serveParent } from './ipc.js';

// The machine's limit for this fan-out: a bare `ws` server writing one pre-serialized message to
// every socket as fast as the sockets take it. No GraphQL, no database.

const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false, backlog: 4096 });
await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
const MAX_BUFFERED = 1024 * 1024;

serveParent(
  {
    url: () => `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    blast: async (m) => {
      const frame = Buffer.from(m.message as string);
      const end = Date.now() + (m.durationMs as number);
      let sent = 0;
      await new Promise<void>((resolve) => {
        const pump = () => {
          if (Date.now() >= end) return resolve();
          for (const client of wss.clients) {
            if (client.bufferedAmount < MAX_BUFFERED) {
              client.send(frame, { binary: false });
              sent++;
            }
          }
          setImmediate(pump);
        };
        pump();
      });
      return sent;
    },
  },
  () => new Promise<void>((resolve) => wss.close(() => resolve())),
);
