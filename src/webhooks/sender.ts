import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { WEBHOOK } from '../limits/fixed.js';
import type { Tracer } from '../telemetry/tracer.js';
import { type DestinationPolicy, RefusedAddressError, type Resolver, guardedLookup, refusedLiteral } from './destination.js';

/** What one attempt came to: a 2xx, or why not (a status, a timeout, a refused address...). */
export type AttemptOutcome = { ok: true; status: number } | { ok: false; status: number | null; error: string };

/** One message as the Standard Webhooks specification frames it. */
export interface WebhookMessage {
  /** webhook-id: the event's id, the same on every attempt. */
  id: string;
  body: string;
  /** The secrets to sign with: the current one, and a rotated-out one still in its overlap. */
  secrets: readonly string[];
}

export interface SenderOptions extends DestinationPolicy {
  timeoutMs: number;
  /** Connections open at once, in all (WEBHOOK_CONCURRENCY), and idle ones kept per host (WEBHOOK_CONCURRENCY_PER_ENDPOINT). */
  maxSockets: number;
  maxSocketsPerHost: number;
  /** How names resolve (a stub in tests); every address is checked against the policy. */
  resolve: Resolver;
  /** With tracing on: a client span per attempt, its traceparent sent to the receiver. */
  tracer?: Tracer | undefined;
}

const USER_AGENT = 'jobs-gateway-webhooks/1';

/**
 * Sends one attempt of a message: POST, the Standard Webhooks headers (signed with the spec's own
 * library, so receivers verify with theirs), no redirect followed (a 3xx is a failure like any
 * non-2xx), the whole attempt bounded by `timeoutMs`, and at most WEBHOOK.responseBytesRead of the
 * answer read (enough for an error message; a receiver's body is not ours to keep). Connections
 * are kept alive per destination; each new one resolves and checks its address (destination.ts).
 */
export class WebhookSender {
  private readonly agents: { http: http.Agent; https: https.Agent };
  private readonly signers = new Map<string, Webhook>();

  constructor(private readonly options: SenderOptions) {
    const lookup = guardedLookup(options.resolve, options);
    // Idle connections close after a while, and a host keeps no more than its attempts at once can
    // use: endpoints change hosts, and receivers that never close would otherwise hold them for good.
    const pool = {
      keepAlive: true,
      lookup,
      timeout: Math.max(options.timeoutMs, WEBHOOK.idleSocketMs),
      maxFreeSockets: options.maxSocketsPerHost,
      maxTotalSockets: options.maxSockets,
    };
    this.agents = { http: new http.Agent(pool), https: new https.Agent(pool) };
  }

  /** `parent`: the traceparent of the write that caused the event: the attempt's span is its child. */
  send(target: string, message: WebhookMessage, signal?: AbortSignal, parent?: string): Promise<AttemptOutcome> {
    const { tracer } = this.options;
    if (!tracer) return this.attempt(target, message, signal);
    // Never the URL (it may carry a receiver's token): its host.
    const attributes = { 'http.request.method': 'POST', 'server.address': URL.parse(target)?.hostname, 'webhook.id': message.id };
    return tracer.span('POST', { kind: 'client', attributes, ...(parent && { parent }) }, async (span) => {
      const outcome = await this.attempt(target, message, signal, tracer.traceparent());
      span.setAttributes({ 'http.response.status_code': outcome.status ?? undefined });
      if (!outcome.ok) {
        span.fail(new Error('attempt failed'));
        span.setAttributes({ 'error.type': outcome.status ? String(outcome.status) : 'no answer' });
      }
      return outcome;
    });
  }

  /** `traceparent`: the attempt's span, for a receiver that traces too. */
  private async attempt(target: string, message: WebhookMessage, signal?: AbortSignal, traceparent?: string): Promise<AttemptOutcome> {
    const url = new URL(target);
    const refused = refusedLiteral(url, this.options);
    if (refused) return { ok: false, status: null, error: `Refused: ${refused}.` };
    const now = new Date();
    const headers = {
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      'webhook-id': message.id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': message.secrets.map((secret) => this.signer(secret).sign(message.id, now, message.body)).join(' '),
      ...(traceparent && { traceparent }),
    };
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const aborted = signal ? AbortSignal.any([timeout, signal]) : timeout;
    const isHttps = url.protocol === 'https:';
    const transport = isHttps ? https : http;
    return new Promise<AttemptOutcome>((resolve) => {
      let settled = false;
      /** `keep`: the answer was read to its end, so its connection can serve the next attempt. */
      const settle = (outcome: AttemptOutcome, keep = false) => {
        if (settled) return;
        settled = true;
        aborted.removeEventListener('abort', onAbort);
        if (!keep) request.destroy();
        resolve(outcome);
      };
      // The deadline is the attempt's, whatever state the request is in (a destroyed socket no longer errors).
      const onAbort = () => settle({ ok: false, status: null, error: timeout.aborted ? `Timed out after ${this.options.timeoutMs} ms.` : STOPPED });
      const request = transport.request(url, { method: 'POST', headers, agent: isHttps ? this.agents.https : this.agents.http }, (response) => {
        const status = response.statusCode ?? 0;
        const kept: Buffer[] = [];
        let read = 0;
        const finish = (keep = false) => {
          if (status >= 200 && status < 300) return settle({ ok: true, status }, keep);
          const text = printable(Buffer.concat(kept).toString('utf8')).slice(0, WEBHOOK.errorChars);
          settle({ ok: false, status, error: `HTTP ${status}${text ? `: ${text}` : ''}` }, keep);
        };
        response.on('data', (chunk: Buffer) => {
          if (read < WEBHOOK.responseBytesRead) kept.push(chunk.subarray(0, WEBHOOK.responseBytesRead - read));
          read += chunk.length;
          // Enough read: the rest is not waited for (the connection is not reused then).
          if (read >= WEBHOOK.responseBytesRead) finish();
        });
        response.on('end', () => finish(true));
        // The status came: a body cut short still answers the attempt.
        response.on('error', () => finish());
        response.on('close', () => finish());
      });
      // A 101 is no answer to a webhook: Node hands the socket over and emits nothing else.
      request.on('upgrade', (response: http.IncomingMessage, socket: Socket) => {
        socket.destroy();
        settle({ ok: false, status: response.statusCode ?? 101, error: `HTTP ${response.statusCode ?? 101}: a protocol switch is no answer.` });
      });
      request.on('error', (error) => settle({ ok: false, status: null, error: describe(error) }));
      // Whatever else ends the request without an answer.
      request.on('close', () => settle({ ok: false, status: null, error: 'The connection closed before an answer.' }));
      if (aborted.aborted) return onAbort();
      aborted.addEventListener('abort', onAbort, { once: true });
      request.end(message.body);
    });
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private signer(secret: string): Webhook {
    let signer = this.signers.get(secret);
    if (!signer) {
      if (this.signers.size > 1_000) this.signers.clear();
      this.signers.set(secret, (signer = new Webhook(secret)));
    }
    return signer;
  }
}

const STOPPED = 'Stopped: the gateway was shutting down.';

/**
 * An attempt's error for the delivery log, which the workspace reads: what went wrong, never the
 * URL (it may carry a token of the receiver's) nor the address a refused name resolved to (which
 * would map the gateway's network for the workspace).
 */
function describe(error: Error & { code?: string }): string {
  if (error instanceof RefusedAddressError) return 'Refused: the host resolves to an address that is not public.';
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'Connection refused.',
    ECONNRESET: 'Connection reset.',
    ENOTFOUND: 'The host name did not resolve.',
    EAI_AGAIN: 'The host name could not be resolved now.',
    EHOSTUNREACH: 'Host unreachable.',
    ETIMEDOUT: 'Connection timed out.',
  };
  return (error.code && reasons[error.code]) || printable(`${error.code ?? error.name}: ${error.message}`).slice(0, WEBHOOK.errorChars);
}

/** Text a receiver wrote, fit to store and to print on a terminal: control characters (NUL, escapes) become spaces, runs of space one. */
function printable(text: string): string {
  return text
    .replace(/\p{Cc}/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}
