import type { GraphQLError } from 'graphql';
import type { RevocationWatch } from '../auth/revocation-watch.js';
import type { Principal } from '../auth/scopes.js';
import { appError, errors } from '../errors.js';
import { parseAfter, positionOf } from '../jobs/change-position.js';
import { type JobFilter, type JobUpdatedArgs, jobFilterOf, restrictedFilter } from '../jobs/job-filter.js';
import type { JobRow } from '../jobs/model.js';
import { ReplayGate } from './replay-gate.js';
import { cpuTurns, microsSince } from './turn-slicer.js';

/** What a jobUpdated subscription watches, read once from its key and arguments. */
export interface JobUpdatedRequest {
  readonly keyId: string;
  /** Only this workspace's jobs are ever offered to it (see LiveJobs). */
  readonly workspaceId: string;
  readonly filter: JobFilter;
  /** Resume after this position: first the replay of what changed since, then live. */
  readonly after: bigint | undefined;
  /**
   * An access token's expiry (epoch ms), for a session that nothing else ends then: a Server-Sent
   * Events stream. (A WebSocket closes as a whole when its token expires, with a code clients retry.)
   */
  readonly expiresAt?: number | undefined;
}

/**
 * What a key subscribes to, for every transport: its own workspace only, with arguments that parse
 * (else BAD_USER_INPUT). The scope it needs is the schema's (`authScopes` of jobUpdated, checked
 * for the whole operation by plugins/operation-scopes.ts on every transport).
 */
export function jobUpdatedRequest(principal: Principal, args: JobUpdatedArgs): JobUpdatedRequest {
  // An access token watches what its restriction lets it see: the filter is narrowed to it, here,
  // for every transport (and a multiplexed group is keyed by the narrowed filter).
  const filter = restrictedFilter(jobFilterOf(args), principal.token?.restriction);
  if (!filter) throw appError('FORBIDDEN', 'This access token is restricted to other jobs than these arguments name.');
  return { keyId: principal.keyId, workspaceId: principal.workspaceId, filter, after: parseAfter(args.after) };
}

/** Where a resumed session's replay comes from, and at what pace it may go (LiveJobs). */
export interface ReplaySource {
  replay(request: JobUpdatedRequest, after: bigint): Promise<JobRow[]>;
  /** Resolves once `bytes()` more may be sent for the request's workspace (or `signal` aborts). */
  paced(request: JobUpdatedRequest, bytes: () => number, signal: AbortSignal): Promise<void>;
}

/** The transport's side of a session: how a state reaches the client. */
export interface SessionOutput<T> {
  /**
   * One state of job `jobId`. While the client is behind, the output keeps only the newest per job
   * (LatestPerKey), so memory stays bounded by the number of jobs.
   */
  send(jobId: string, item: T): void;
  /** Resolves once the client can take another replayed state (a replay goes at its pace). */
  writable(): Promise<void>;
  /** What sending `item` writes, in bytes (exact or close): what a replay spends of the response budget. */
  bytesOf(item: T): number;
  /** The session ended on its own (its key was revoked): end the subscription with `error`. */
  end(error: GraphQLError): void;
}

/**
 * One jobUpdated subscription, whatever carries it: a member of a multiplexed WebSocket group, a
 * Server-Sent Events stream, or a WebSocket operation the multiplexer does not take. It holds the
 * rules of a subscription, once: a resume replays and then joins the live stream with no gap and no
 * duplicate (ReplayGate), and it ends when its key is revoked. Transports decide only how a state
 * is rendered and written.
 */
export class JobUpdatedSession<T> {
  private gate: ReplayGate<T> | undefined;
  private closed = false;
  /** Aborts a replay's wait for its budget when the session closes; made only for a replay (most sessions never have one). */
  private ended: AbortController | undefined;
  private readonly unwatch: () => void;

  constructor(
    private readonly request: JobUpdatedRequest,
    private readonly output: SessionOutput<T>,
    revocations: RevocationWatch,
  ) {
    if (request.after !== undefined) this.gate = new ReplayGate(request.after);
    // A subscription outlives the request or handshake that authenticated it.
    const unwatch = revocations.watch(request.keyId, () => {
      if (this.close()) output.end(errors.keyRevoked());
    });
    // An access token's session ends when the token does: its holder subscribes again with a fresh one.
    const expiry =
      request.expiresAt === undefined
        ? undefined
        : setTimeout(() => this.close() && output.end(errors.tokenExpired()), Math.max(0, request.expiresAt - Date.now())).unref();
    this.unwatch = () => {
      unwatch();
      clearTimeout(expiry);
    };
  }

  /**
   * The live states of one dispatch, in position order (`items[i]` is `jobs[i]` as the transport
   * renders it). Runs per subscriber and dispatch: a plain loop, and no gate once it passes
   * everything (a resumed dashboard would otherwise consult it, and allocate for it, on every change
   * for good).
   */
  offer(jobs: readonly JobRow[], items: readonly T[]): void {
    if (this.closed) return;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      const item = items[i]!;
      if (this.gate) {
        if (this.gate.offer(job.id, positionOf(job), item) !== 'send') continue;
        if (this.gate.open) this.gate = undefined;
      }
      this.output.send(job.id, item);
    }
  }

  /**
   * With `after`: sends the replay (`replays` reads it, `render` turns each job into an item) at the
   * client's pace, one job at a time while it has room, so a resume over thousands of jobs is never
   * queued whole, and within its workspace's response budget, so that a hundred resumes of
   * megabytes each cannot take the server from everyone else; then what the gate held meanwhile.
   * Live deliveries must already be offered (the subscriber registered) before this is called, or
   * changes committed during the replay are lost.
   * Rejects with the replay's error (OVERLOADED, BAD_USER_INPUT, the database's).
   */
  async start(replays: ReplaySource, render: (job: JobRow) => T | Promise<T>): Promise<void> {
    const { after } = this.request;
    if (after === undefined) return;
    const ended = (this.ended = new AbortController());
    const jobs = await replays.replay(this.request, after);
    // Rendering is CPU work that shares the process's slice of each turn (cpuTurns): replays that
    // start at once, each with room to send, would otherwise render back to back in one turn.
    const step = cpuTurns.loop();
    for (const job of jobs) {
      await this.output.writable();
      if (this.closed) return;
      const started = performance.now();
      const item = await render(job);
      if (this.closed) return;
      const turn = step(microsSince(started));
      if (turn) await turn;
      if (this.closed) return;
      await replays.paced(this.request, () => this.output.bytesOf(item), ended.signal);
      if (this.closed) return;
      this.output.send(job.id, item);
    }
    if (this.closed) return;
    const replayed = new Map(jobs.map((job) => [job.id, positionOf(job)]));
    for (const [jobId, item] of this.gate?.release(replayed) ?? []) this.output.send(jobId, item);
  }

  /** Ends the session (the transport ended it, or the key was revoked); false if it had ended. */
  close(): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.ended?.abort();
    this.unwatch();
    return true;
  }
}
