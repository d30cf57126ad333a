import type { Socket } from 'node:net';
import { type RawData, WebSocket, WebSocketServer } from 'ws';

/** One connected WebSocket: the server's end as `ws` hands it to the gateway, and a real client. */
export interface WsPair {
  /** The server's end. */
  readonly server: WebSocket;
  /** The TCP connection under `server` (what SocketSender corks, and whose `drain` it waits for). */
  readonly connection: Socket;
  /** The client's end: `client.pause()` stops it reading (the kernel's buffers fill, then Node's). */
  readonly client: WebSocket;
  /** Every text message the client has received, in order. */
  readonly received: string[];
  /** How the client's end closed, once it has. */
  readonly closed: { code: number; reason: string } | undefined;
  /** Resolves once the client has received `count` messages in all; rejects if it closes first. */
  receivedCount(count: number): Promise<string[]>;
  /** Resolves with the client's close. */
  whenClosed(): Promise<{ code: number; reason: string }>;
}

/** A `ws` server on 127.0.0.1 and a random port, set up as the gateway's (no compression). */
export interface WsPairs {
  /** Opens one more connection; resolves once both ends are open. */
  connect(): Promise<WsPair>;
  /** Ends every connection (terminate: no close handshake) and stops the server. */
  close(): Promise<void>;
}

/** A message's text, whatever form `ws` handed it in. */
const textOf = (data: RawData) => (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString();

export async function startWsPairs(): Promise<WsPairs> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const { port } = wss.address() as { port: number };
  const clients = new Set<WebSocket>();
  // Connections are opened one at a time, so the server's next connection is the client's.
  let connecting: Promise<unknown> = Promise.resolve();

  const open = async (): Promise<WsPair> => {
    const accepted = new Promise<{ server: WebSocket; connection: Socket }>((resolve) =>
      wss.once('connection', (server, request) => resolve({ server, connection: request.socket })),
    );
    const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    clients.add(client);
    const received: string[] = [];
    let closed: { code: number; reason: string } | undefined;
    const waiters = new Set<() => void>();
    const notify = () => {
      for (const waiter of [...waiters]) waiter();
    };
    client.on('message', (data: RawData) => {
      received.push(textOf(data));
      notify();
    });
    client.on('close', (code, reason) => {
      closed = { code, reason: reason.toString() };
      notify();
    });
    await new Promise<void>((resolve, reject) => {
      client.once('open', () => resolve());
      client.once('error', reject);
    });
    const { server, connection } = await accepted;
    const until = <T>(probe: () => T | undefined, what: string) =>
      new Promise<T>((resolve, reject) => {
        const check = () => {
          const value = probe();
          if (value !== undefined) {
            waiters.delete(check);
            resolve(value);
          } else if (closed && what !== 'close') {
            waiters.delete(check);
            reject(new Error(`the client closed (${JSON.stringify(closed)}) after ${received.length} messages, waiting for ${what}`));
          }
        };
        waiters.add(check);
        check();
      });
    return {
      server,
      connection,
      client,
      received,
      get closed() {
        return closed;
      },
      receivedCount: (count) => until(() => (received.length >= count ? received : undefined), `${count} messages`),
      whenClosed: () => until(() => closed, 'close'),
    };
  };

  return {
    connect: () => {
      const pair = connecting.then(open);
      connecting = pair.catch(() => undefined);
      return pair;
    },
    close: async () => {
      for (const client of clients) client.terminate();
      for (const server of wss.clients) server.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
