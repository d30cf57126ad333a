import { type NatsConnection, type Subscription, connect } from '@nats-io/transport-node';
import type { Logger } from '../../logger.js';
import { BUS_CONNECT_BACKOFF_MS } from '../../limits/fixed.js';
import { busAddress, natsOptionsOf } from './bus-url.js';

/** The subjects of one database's gateways (its "Installation" id): gateways of other databases may share the server, never the subjects. */
export interface BusSubjects {
  /** One workspace's changes, from the feed reader. */
  workspace(workspaceId: string): string;
  /** The reader's frontier: what is final, for every workspace. */
  readonly frontier: string;
  /** A new reader started: what it did not see, followers read themselves. */
  readonly reader: string;
  /** A writer committed job changes: the reader reads. */
  readonly wake: string;
  /** What each instance's rate limits took (limits/shared-rate-limits.ts). */
  readonly limits: string;
  /** What each key holds open on each instance (limits/shared-connection-caps.ts). */
  readonly connections: string;
}

export function busSubjects(installation: string): BusSubjects {
  // A subject token cannot hold '.', '*', '>' or white space (a uuid has none; anything else is hex-encoded).
  const token = /^[A-Za-z0-9_-]+$/.test(installation) ? installation : `x${Buffer.from(installation).toString('hex')}`;
  const prefix = `jobs-gateway.${token}`;
  return {
    workspace: (workspaceId) => `${prefix}.workspace.${workspaceId}`,
    frontier: `${prefix}.frontier`,
    reader: `${prefix}.reader`,
    wake: `${prefix}.wake`,
    limits: `${prefix}.limits`,
    connections: `${prefix}.connections`,
  };
}

export interface FeedBusEvents {
  /** Connected (the first time, or again after an outage): messages may have been missed meanwhile. */
  onUp(): void;
  /** The connection is gone; the client keeps trying. */
  onDown(): void;
}

type Handler = (data: Uint8Array) => void;

/**
 * The connection to the feed bus (a NATS server): publish, and subscriptions that outlive outages.
 * The client reconnects by itself once it has connected, and subscribes again; this class adds what
 * it lacks: a first connect that keeps trying in the background (the gateway starts without the
 * bus, on today's path), subscriptions made while disconnected, and up/down events for the feed.
 */
export class FeedBus {
  private connection: NatsConnection | undefined;
  private readonly handlers = new Map<string, { handler: Handler; subscription?: Subscription | undefined }>();
  private stopped = false;
  private connected = false;
  private retry: NodeJS.Timeout | undefined;
  /** Messages published and received so far, for the metrics. */
  published = 0;
  received = 0;

  constructor(
    private readonly url: string,
    private readonly name: string,
    private readonly logger: Logger,
  ) {}

  /** The connection is up: what is published now reaches the others. */
  get up(): boolean {
    return this.connected;
  }

  /** The largest message the server takes (its max_payload). */
  get maxPayload(): number {
    return this.connection?.info?.max_payload ?? 1024 * 1024;
  }

  start(events: FeedBusEvents): void {
    void this.connectLoop(events, BUS_CONNECT_BACKOFF_MS.first);
  }

  publish(subject: string, data: Uint8Array): boolean {
    if (!this.connected || !this.connection) return false;
    try {
      this.connection.publish(subject, data);
      this.published++;
      return true;
    } catch (error) {
      this.logger.warn({ err: error }, 'could not publish on the feed bus');
      return false;
    }
  }

  /** Delivers every message on `subject` to `handler` from now on, across outages; returns the unsubscribe. */
  subscribe(subject: string, handler: Handler): () => void {
    const entry: { handler: Handler; subscription?: Subscription | undefined } = { handler };
    this.handlers.set(subject, entry);
    if (this.connection && !this.connection.isClosed()) entry.subscription = this.open(this.connection, subject, handler);
    return () => {
      if (this.handlers.get(subject) === entry) this.handlers.delete(subject);
      entry.subscription?.unsubscribe();
    };
  }

  /** Resolves once the server has seen everything sent so far (subscriptions included). */
  async flush(): Promise<void> {
    if (this.connected && this.connection) await this.connection.flush();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const connection = this.connection;
    this.connection = undefined;
    this.connected = false;
    await connection?.close().catch(() => undefined);
  }

  private open(connection: NatsConnection, subject: string, handler: Handler): Subscription {
    return connection.subscribe(subject, {
      callback: (error, message) => {
        if (error) return;
        this.received++;
        // The client calls this inside its reader: a throw would stop the connection from reading.
        try {
          handler(message.data);
        } catch (thrown) {
          this.logger.warn({ err: thrown, subject }, 'a feed bus message could not be handled');
        }
      },
    });
  }

  private async connectLoop(events: FeedBusEvents, backoff: number): Promise<void> {
    if (this.stopped) return;
    let connection: NatsConnection;
    try {
      connection = await connect({
        ...natsOptionsOf(this.url),
        name: this.name,
        maxReconnectAttempts: -1,
        // Its own messages are of no use to it (the reader reads its own batches locally).
        noEcho: true,
        reconnectTimeWait: BUS_CONNECT_BACKOFF_MS.first,
        pingInterval: 5_000,
        maxPingOut: 2,
      });
    } catch (error) {
      if (this.stopped) return;
      if (backoff === BUS_CONNECT_BACKOFF_MS.first) {
        this.logger.warn({ err: error, bus: busAddress(this.url) }, 'feed bus unreachable; live updates take the PostgreSQL path until it answers');
      }
      this.retry = setTimeout(() => void this.connectLoop(events, Math.min(backoff * 2, BUS_CONNECT_BACKOFF_MS.max)), backoff);
      this.retry.unref();
      return;
    }
    if (this.stopped) return void connection.close();
    this.connection = connection;
    for (const [subject, entry] of this.handlers) entry.subscription = this.open(connection, subject, entry.handler);
    this.connected = true;
    this.logger.info({ bus: busAddress(this.url) }, 'feed bus connected');
    events.onUp();
    void (async () => {
      for await (const status of connection.status()) {
        if (status.type === 'disconnect' && this.connected) {
          this.connected = false;
          this.logger.warn({ bus: busAddress(this.url) }, 'feed bus connection lost; live updates take the PostgreSQL path until it is back');
          events.onDown();
        } else if (status.type === 'reconnect' && !this.connected) {
          // The client subscribed again by itself; what was published meanwhile is lost.
          this.connected = true;
          this.logger.info({ bus: busAddress(this.url) }, 'feed bus reconnected');
          events.onUp();
        }
      }
    })();
    void connection.closed().then(() => {
      if (this.stopped || this.connection !== connection) return;
      // Closed for good (the client gave up, or the server refused it): start over.
      this.connection = undefined;
      if (this.connected) {
        this.connected = false;
        events.onDown();
      }
      void this.connectLoop(events, BUS_CONNECT_BACKOFF_MS.first);
    });
  }
}
