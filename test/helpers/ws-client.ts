import type net from 'node:net';
import { type RawData, WebSocket } from 'ws';

export interface ServerMessage {
  type: string;
  id?: string;
  payload?: unknown;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * A bare graphql-transport-ws client for tests: it queues every message so a test can wait for
 * exactly what it expects (or for the close), with a timeout, and never sleeps.
 */
export class TestSocket {
  readonly messages: ServerMessage[] = [];
  private readonly waiters = new Set<() => void>();
  closed: CloseInfo | undefined;
  private resumeTcp: (() => net.Socket) | undefined;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data: RawData) => {
      this.messages.push(JSON.parse((data as Buffer).toString()) as ServerMessage);
      this.notify();
    });
    socket.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.notify();
    });
  }

  /** Opens a socket; with `apiKey`, sends connection_init and waits for the ack. */
  static async open(baseUrl: string, options: { apiKey?: string; headers?: Record<string, string>; init?: boolean; ack?: boolean } = {}): Promise<TestSocket> {
    const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/graphql`, 'graphql-transport-ws', { headers: options.headers });
    const client = new TestSocket(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    if (options.init !== false) {
      client.send({ type: 'connection_init', payload: options.apiKey ? { apiKey: options.apiKey } : {} });
      if (options.ack !== false) await client.waitFor((m) => m.type === 'connection_ack');
    }
    return client;
  }

  send(message: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(message));
  }

  subscribe(id: string, query: string, variables?: Record<string, unknown>): void {
    this.send({ id, type: 'subscribe', payload: { query, variables } });
  }

  complete(id: string): void {
    this.send({ id, type: 'complete' });
  }

  /**
   * Stops taking bytes off the TCP connection, as a frozen peer would: the kernel's buffers fill,
   * then the server's. ws resumes its connection itself whenever its parser drains, so that is
   * held off until `resumeReading`.
   */
  stopReading(): void {
    const tcp = (this.socket as unknown as { _socket: net.Socket })._socket;
    if (this.resumeTcp) return;
    const resume = tcp.resume.bind(tcp);
    this.resumeTcp = resume;
    tcp.resume = () => tcp;
    tcp.pause();
  }

  resumeReading(): void {
    const tcp = (this.socket as unknown as { _socket: net.Socket })._socket;
    if (!this.resumeTcp) return;
    tcp.resume = this.resumeTcp;
    this.resumeTcp = undefined;
    tcp.resume();
  }

  /** The `next` payloads received for a subscription id, in order. */
  nexts<T = unknown>(id: string): T[] {
    return this.messages.filter((m) => m.type === 'next' && m.id === id).map((m) => m.payload as T);
  }

  /** Resolves with the first queued message (oldest first) that matches; fails after `timeoutMs`. */
  waitFor(match: (message: ServerMessage) => boolean, timeoutMs = 20_000): Promise<ServerMessage> {
    return this.until(() => this.messages.find(match), timeoutMs, 'message');
  }

  /** Resolves once `count` next messages have arrived for `id`. */
  async waitForNexts<T = unknown>(id: string, count: number, timeoutMs = 20_000): Promise<T[]> {
    await this.until(() => (this.nexts(id).length >= count ? true : undefined), timeoutMs, `${count} next messages for ${id}`);
    return this.nexts<T>(id);
  }

  waitForClose(timeoutMs = 20_000): Promise<CloseInfo> {
    return this.until(() => this.closed, timeoutMs, 'close');
  }

  close(): void {
    if (this.socket.readyState === WebSocket.OPEN || this.socket.readyState === WebSocket.CONNECTING) this.socket.close(1000);
  }

  private until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = probe();
        if (value === undefined) return false;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(value);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(
            `timed out waiting for ${what}; got ${JSON.stringify(this.messages.map((m) => [m.id, m.type, (m.payload as { data?: { jobUpdated?: { changeCursor?: string; status?: string } } } | undefined)?.data?.jobUpdated?.changeCursor, (m.payload as { data?: { jobUpdated?: { status?: string } } } | undefined)?.data?.jobUpdated?.status]))}; closed ${JSON.stringify(this.closed)}`,
          ),
        );
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
