import http from 'node:http';
import https from 'node:https';
import { Webhook } from 'standardwebhooks';
import { WEBHOOK } from '../limits/fixed.js';
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
  /** How names resolve (a stub in tests); every address is checked against the policy. */
  resolve: Resolver;
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
    this.agents = {
      http: new http.Agent({ keepAlive: true, lookup }),
      https: new https.Agent({ keepAlive: true, lookup }),
    };
  }

  async send(target: string, message: WebhookMessage, signal?: AbortSignal): Promise<AttemptOutcome> {
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
    };
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const aborted = signal ? AbortSignal.any([timeout, signal]) : timeout;
    const isHttps = url.protocol === 'https:';
    const transport = isHttps ? https : http;
    return new Promise<AttemptOutcome>((resolve) => {
      let settled = false;
      const settle = (outcome: AttemptOutcome) => {
        if (settled) return;
        settled = true;
        resolve(outcome);
      };
      const request = transport.request(
        url,
        { method: 'POST', headers, agent: isHttps ? this.agents.https : this.agents.http, signal: aborted },
        (response) => {
          const status = response.statusCode ?? 0;
          const kept: Buffer[] = [];
          let read = 0;
          const finish = () => {
            const text = Buffer.concat(kept).toString('utf8').replace(/\s+/g, ' ').trim().slice(0, WEBHOOK.errorChars);
            if (status >= 200 && status < 300) settle({ ok: true, status });
            else settle({ ok: false, status, error: `HTTP ${status}${text ? `: ${text}` : ''}` });
          };
          response.on('data', (chunk: Buffer) => {
            if (read < WEBHOOK.responseBytesRead) kept.push(chunk.subarray(0, WEBHOOK.responseBytesRead - read));
            read += chunk.length;
            // Enough read: the rest is not waited for (the connection is not reused then).
            if (read >= WEBHOOK.responseBytesRead) {
              finish();
              response.destroy();
            }
          });
          response.on('end', finish);
          // The status came: a body cut short still answers the attempt.
          response.on('error', finish);
          response.on('close', finish);
        },
      );
      request.on('error', (error) => settle({ ok: false, status: null, error: describe(error, timeout.aborted, this.options.timeoutMs) }));
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

/** An attempt's error for the delivery log: what went wrong, never the URL (it may carry a token of the receiver's). */
function describe(error: Error & { code?: string }, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `Timed out after ${timeoutMs} ms.`;
  if (error instanceof RefusedAddressError) return `Refused: ${error.message}.`;
  if (error.name === 'AbortError') return 'Stopped: the gateway was shutting down.';
  const reasons: Record<string, string> = {
    ECONNREFUSED: 'Connection refused.',
    ECONNRESET: 'Connection reset.',
    ENOTFOUND: 'The host name did not resolve.',
    EAI_AGAIN: 'The host name could not be resolved now.',
    EHOSTUNREACH: 'Host unreachable.',
    ETIMEDOUT: 'Connection timed out.',
  };
  return (error.code && reasons[error.code]) ?? `${error.code ?? error.name}: ${error.message}`.slice(0, WEBHOOK.errorChars);
}
