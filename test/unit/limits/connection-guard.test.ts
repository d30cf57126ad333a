import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { guardConnections } from '../../../src/limits/connection-guard.js';

// guardConnections on a real node:http server on loopback, with real TCP clients: connections
// that send nothing, requests the server holds unanswered until the test answers them, and
// WebSocket handshakes (a `ws` server behind the guard, as in the gateway).

/** One TCP connection: the client's end and the server's. */
interface Conn {
  readonly client: net.Socket;
  readonly server: net.Socket;
  /** What the client has received. */
  readonly received: () => string;
  /** Resolves once the client's end has closed. */
  readonly clientClosed: Promise<void>;
}

const UPGRADE_REQUEST =
  'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

class GuardedServer {
  private readonly wss = new WebSocketServer({ noServer: true });
  private onConnection: ((socket: net.Socket) => void) | undefined;
  private readonly onRequest = new Map<net.Socket, (res: http.ServerResponse) => void>();
  private readonly onUpgrade = new Map<net.Socket, () => void>();
  /** Every socket the server was handed, refused ones included. */
  private readonly sockets: net.Socket[] = [];
  /** The response held for each connection's request in progress. */
  private readonly held = new Map<net.Socket, http.ServerResponse>();
  private readonly clients: net.Socket[] = [];

  private constructor(
    private readonly http: http.Server,
    private readonly port: number,
  ) {}

  static async start(maxConnections: number): Promise<GuardedServer> {
    const server = http.createServer((req, res) => guarded.onRequest.get(req.socket)?.(res));
    guardConnections(server, maxConnections);
    // After the guard's listeners, as in the gateway (the guard is set up with the server, the WebSockets after).
    server.on('connection', (socket: net.Socket) => guarded.onConnection?.(socket));
    server.on('upgrade', (req, socket, head) => {
      guarded.wss.handleUpgrade(req, socket, head, () => guarded.onUpgrade.get(req.socket)?.());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const guarded: GuardedServer = new GuardedServer(server, (server.address() as net.AddressInfo).port);
    return guarded;
  }

  /** Connections the server holds: handed to it, and neither refused, evicted nor closed. */
  get open(): number {
    return this.sockets.filter((socket) => !socket.destroyed).length;
  }

  /** Opens a connection; resolves once the server has taken it (or refused it: `server.destroyed`). */
  async connect(): Promise<Conn> {
    const handed = new Promise<net.Socket>((resolve) => (this.onConnection = resolve));
    const client = net.connect(this.port, '127.0.0.1');
    this.clients.push(client);
    let received = '';
    client.on('data', (chunk: Buffer) => (received += chunk.toString()));
    client.on('error', () => undefined); // a refused or evicted connection may be reset
    const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    const server = await handed;
    this.sockets.push(server);
    return { client, server, received: () => received, clientClosed };
  }

  /** Sends a request on `conn`; resolves once the server is handling it (it holds the response). */
  async request(conn: Conn): Promise<void> {
    const handled = new Promise<http.ServerResponse>((resolve) => this.onRequest.set(conn.server, resolve));
    conn.client.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    this.held.set(conn.server, await handled);
  }

  /** Answers `conn`'s request; resolves once its response has closed (the connection is idle again). */
  async answer(conn: Conn): Promise<void> {
    const res = this.held.get(conn.server)!;
    this.held.delete(conn.server);
    const closed = new Promise<void>((resolve) => res.once('close', () => resolve()));
    res.end('answered');
    await closed;
  }

  /** Upgrades `conn` to a WebSocket; resolves once the server has completed the handshake. */
  async upgrade(conn: Conn): Promise<void> {
    const upgraded = new Promise<void>((resolve) => this.onUpgrade.set(conn.server, resolve));
    conn.client.write(UPGRADE_REQUEST);
    await upgraded;
  }

  /** The client drops `conn` (a reset); resolves once the server's side has closed. */
  async close(conn: Conn): Promise<void> {
    const closed = new Promise<void>((resolve) => (conn.server.closed ? resolve() : conn.server.once('close', () => resolve())));
    this.held.delete(conn.server);
    conn.client.resetAndDestroy();
    await closed;
  }

  async stop(): Promise<void> {
    for (const client of this.clients) client.destroy();
    for (const res of this.held.values()) res.destroy();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    this.wss.close();
  }
}

const servers: GuardedServer[] = [];
async function guarded(maxConnections: number): Promise<GuardedServer> {
  const server = await GuardedServer.start(maxConnections);
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

it('holds at most maxConnections: at the cap, a new connection takes the place of the oldest idle one', async () => {
  const server = await guarded(3);
  const [a, b, c] = [await server.connect(), await server.connect(), await server.connect()];
  expect(server.open).toBe(3);

  const d = await server.connect();
  expect(d.server.destroyed).toBe(false);
  expect(a.server.destroyed).toBe(true);
  expect([b, c].map((conn) => conn.server.destroyed)).toEqual([false, false]);
  expect(server.open).toBe(3);
  await a.clientClosed;

  const e = await server.connect();
  expect(e.server.destroyed).toBe(false);
  expect(b.server.destroyed).toBe(true);
  expect(server.open).toBe(3);
});

it('never evicts a connection with a request in progress or one upgraded to a WebSocket; when every one is, closes the new one unanswered', async () => {
  const server = await guarded(3);
  const [busy, webSocket, idle] = [await server.connect(), await server.connect(), await server.connect()];
  await server.request(busy);
  await server.upgrade(webSocket);

  const replacing = await server.connect();
  expect(idle.server.destroyed).toBe(true);
  expect([busy, webSocket, replacing].map((conn) => conn.server.destroyed)).toEqual([false, false, false]);
  await server.request(replacing);

  const refused = await server.connect();
  expect(refused.server.destroyed).toBe(true);
  await refused.clientClosed;
  expect(refused.received()).toBe(''); // no 503: the connection is closed before anything is read or written
  expect([busy, webSocket, replacing].map((conn) => conn.server.destroyed)).toEqual([false, false, false]);
  expect(server.open).toBe(3);
});

it('counts a connection whose request has been answered as idle again, and evictable', async () => {
  const server = await guarded(2);
  const [first, second] = [await server.connect(), await server.connect()];
  await server.request(first);
  await server.request(second);
  await server.answer(first);

  const third = await server.connect();
  expect(third.server.destroyed).toBe(false);
  expect(second.server.destroyed).toBe(false);
  expect(first.server.destroyed).toBe(true);
  await first.clientClosed;
  expect(first.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*answered$/);
});

it('gives the slot of a connection back when it closes, busy or upgraded', async () => {
  const server = await guarded(2);
  const [busy, webSocket] = [await server.connect(), await server.connect()];
  await server.request(busy);
  await server.upgrade(webSocket);
  expect((await server.connect()).server.destroyed).toBe(true);

  await server.close(busy);
  const instead = await server.connect();
  expect(instead.server.destroyed).toBe(false);
  await server.request(instead);
  await server.close(webSocket);
  expect((await server.connect()).server.destroyed).toBe(false);
  expect(server.open).toBe(2);
});

type Op = { kind: 'connect' } | { kind: 'request' | 'answer' | 'upgrade' | 'close'; pick: number };

it('never holds more than maxConnections, and evicts or refuses exactly as the rule says, whatever the opens, requests, upgrades and closes (property)', async () => {
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: fc.constant({ kind: 'connect' as const }) },
    fc.record({ kind: fc.constantFrom('request' as const, 'answer' as const, 'upgrade' as const, 'close' as const), pick: fc.nat() }),
  );
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(op, { minLength: 1, maxLength: 30 }), async (max, ops) => {
      const server = await GuardedServer.start(max);
      try {
        /** What the guard should hold, oldest first. */
        const model: Array<{ conn: Conn; state: 'idle' | 'busy' | 'webSocket' }> = [];
        const inState = (state: 'idle' | 'busy' | 'webSocket' | 'any', pick: number) => {
          const candidates = model.filter((entry) => state === 'any' || entry.state === state);
          return candidates[pick % Math.max(candidates.length, 1)];
        };
        for (const step of ops) {
          if (step.kind === 'connect') {
            const evicted = model.length >= max ? model.find((entry) => entry.state === 'idle') : undefined;
            const refused = model.length >= max && !evicted;
            const conn = await server.connect();
            expect(conn.server.destroyed).toBe(refused);
            if (evicted) {
              expect(evicted.conn.server.destroyed).toBe(true);
              model.splice(model.indexOf(evicted), 1);
            }
            if (!refused) model.push({ conn, state: 'idle' });
          } else if (step.kind === 'request' || step.kind === 'upgrade') {
            const entry = inState('idle', step.pick);
            if (!entry) continue;
            await (step.kind === 'request' ? server.request(entry.conn) : server.upgrade(entry.conn));
            entry.state = step.kind === 'request' ? 'busy' : 'webSocket';
          } else if (step.kind === 'answer') {
            const entry = inState('busy', step.pick);
            if (!entry) continue;
            await server.answer(entry.conn);
            entry.state = 'idle';
          } else {
            const entry = inState('any', step.pick);
            if (!entry) continue;
            await server.close(entry.conn);
            model.splice(model.indexOf(entry), 1);
          }
          expect(server.open).toBeLessThanOrEqual(max);
          expect(server.open).toBe(model.length);
          for (const { conn } of model) expect(conn.server.destroyed).toBe(false);
        }
      } finally {
        await server.stop();
      }
    }),
    { numRuns: 100 },
  );
});
