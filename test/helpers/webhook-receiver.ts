import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll } from 'vitest';

/** One request a receiver got. */
export interface Received {
  headers: Record<string, string>;
  body: string;
  /** The body parsed (the event). */
  event: { id: string; type: string; timestamp: string; changeCursor: string; reason?: string; data: Record<string, unknown> };
}

/** How a receiver answers: a status, or never (the request hangs until the gateway gives up). */
export type Answer = number | 'hang';

/**
 * A webhook receiver of the test's own: a real HTTP server on 127.0.0.1 (the gateway runs with
 * WEBHOOK_ALLOW_PRIVATE=true to reach it) that records every request and answers as told. It can
 * be taken down (nothing listens on its port) and brought back on the same port.
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  answer: (event: Received) => Answer = () => 204;
  /** The body of answers other than 2xx (default: says the status). */
  body: string | undefined;
  private server: http.Server | undefined;
  private port = 0;
  private readonly hanging = new Set<http.ServerResponse>();
  private waiters: Array<() => void> = [];

  static async start(): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver();
    await receiver.up();
    started.push(receiver);
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks`;
  }

  /** Listens (again, on the same port once it had one). */
  async up(): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const headers = Object.fromEntries(Object.entries(req.headers).map(([name, value]) => [name, String(value)]));
        const received: Received = { headers, body, event: JSON.parse(body) as Received['event'] };
        this.received.push(received);
        for (const wake of this.waiters.splice(0)) wake();
        const answer = this.answer(received);
        if (answer === 'hang') {
          this.hanging.add(res);
          res.on('close', () => this.hanging.delete(res));
          return;
        }
        res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer >= 300 ? (this.body ?? `receiver says ${answer}`) : '');
      });
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and drops every connection: attempts meanwhile are refused. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const res of this.hanging) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Resolves once `done(received)` holds, checked at every request (fails after `timeoutMs`). */
  async until(done: (received: Received[]) => boolean, timeoutMs = 20_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.received)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`receiver: condition not met in ${timeoutMs} ms; got ${this.received.map((r) => r.event.type).join(', ')}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received;
  }

  /** The events of one job, in the order they arrived. */
  eventsOf(jobId: string): Received[] {
    return this.received.filter((r) => r.event.data.id === jobId);
  }
}

const started: WebhookReceiver[] = [];
afterAll(async () => {
  await Promise.all(started.splice(0).map((receiver) => receiver.down()));
});
