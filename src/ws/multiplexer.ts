import { type DocumentNode, type ExecutionArgs, type ExecutionResult, execute } from 'graphql';
import type { RevocationWatch } from '../auth/revocation-watch.js';
import type { GatewayContext } from '../graphql/context.js';
import { clientError, clientResult } from '../graphql/mask-error.js';
import type { JobRow } from '../jobs/model.js';
import { type JobUpdatedRequest, JobUpdatedSession, type SessionOutput } from '../live/job-updated-session.js';
import type { LiveJobs, LiveSubscriber } from '../live/live-jobs.js';
import { TurnSlicer } from '../live/turn-slicer.js';
import { FANOUT_SENDS_PER_TURN } from '../limits/fixed.js';
import type { Logger } from '../logger.js';
import type { SocketSender } from './socket-sender.js';

export interface GroupSpec {
  /**
   * Subscribers with equal keys share one execution and one serialized payload per change: the key
   * must cover the workspace, the document and every variable but `after`.
   */
  key: string;
  document: DocumentNode;
  operationName: string | null | undefined;
  variableValues: Record<string, unknown> | undefined;
  /** The group outlives whoever created it: its context speaks for no one's key or connection. */
  contextValue: GatewayContext;
  schema: ExecutionArgs['schema'];
}

/**
 * jobUpdated over WebSockets without one execution per subscriber: subscribers of one workspace
 * with the same document and variables (`after` aside) form a group; per change the group executes
 * once, serializes once, and writes the same payload to every member's socket behind its own
 * graphql-ws message id. graphql-ws keeps the protocol (init, subscribe, complete, pings); only
 * these `next` messages bypass it, because it would stringify the result once per socket.
 */
export class Multiplexer {
  private readonly groups = new Map<string, Group>();
  /** Executions so far: grows with distinct subscriptions and changes, not with sockets. */
  executions = 0;
  /** Every group's fan-out together lets the event loop turn between slices of writes. */
  readonly turns = new TurnSlicer(FANOUT_SENDS_PER_TURN);

  constructor(
    private readonly live: LiveJobs,
    private readonly revocations: RevocationWatch,
    private readonly logger: Logger,
  ) {}

  get groupCount(): number {
    return this.groups.size;
  }

  /** Subscriptions across all groups. */
  get memberCount(): number {
    let count = 0;
    for (const group of this.groups.values()) count += group.members.size;
    return count;
  }

  /**
   * Adds a member for `request`; with `after`, replays before it receives live payloads. Rejects
   * (having removed the member) when the replay fails. The member leaves when `closed` aborts (its
   * socket closed), whatever graphql-ws did with the operation.
   */
  async join(
    spec: GroupSpec,
    request: JobUpdatedRequest,
    sender: SocketSender,
    ids: { id: string; operationId: string },
    closed: readonly AbortSignal[],
  ): Promise<Member> {
    if (closed.some((signal) => signal.aborted)) throw new SocketClosedError();
    let group = this.groups.get(spec.key);
    if (!group) {
      group = new Group(spec, request, this, this.logger);
      this.groups.set(spec.key, group);
      group.unregister = this.live.add(group);
    }
    const member = new Member(group, request, sender, ids, closed, this.revocations);
    group.members.add(member);
    try {
      await member.session.start(this.live, (job) => group.render(job));
    } catch (error) {
      member.leave();
      throw error;
    }
    return member;
  }

  /** Called by a group when its last member left. */
  removeGroup(group: Group): void {
    if (this.groups.get(group.spec.key) === group) this.groups.delete(group.spec.key);
    group.unregister?.();
  }
}

class Group implements LiveSubscriber {
  readonly members = new Set<Member>();
  unregister: (() => void) | undefined;
  /** Executions may be asynchronous; chaining them keeps each job's states in cursor order. */
  private tail: Promise<void> = Promise.resolve();

  readonly workspaceId: string;
  readonly filter: JobUpdatedRequest['filter'];

  constructor(
    readonly spec: GroupSpec,
    // Every member's request has the same workspace and filter: the group key covers what decides them.
    { workspaceId, filter }: JobUpdatedRequest,
    private readonly owner: Multiplexer,
    private readonly logger: Logger,
  ) {
    this.workspaceId = workspaceId;
    this.filter = filter;
  }

  deliver(jobs: readonly JobRow[]): Promise<void> {
    this.tail = this.tail
      .then(async () => {
        if (this.members.size === 0) return;
        const payloads: Buffer[] = [];
        // Not cut in slices (cpuTurns): a dispatch's states reach each socket in one write, and a
        // dispatch is bounded by the feed's batch.
        for (const job of jobs) payloads.push(await this.render(job));
        // Members that join meanwhile are offered the change too, as they were before slicing:
        // their sessions drop what a resume already covers (ReplayGate).
        const step = this.owner.turns.loop();
        for (const member of this.members) {
          member.offer(jobs, payloads);
          const turn = step();
          if (turn) await turn;
        }
      })
      // One failed delivery must not stop the chain (and with it every later one).
      .catch((error: unknown) => this.logger.error({ err: error }, 'subscription delivery failed'));
    return this.tail;
  }

  /**
   * The serialized execution result of the group's document for one job state, masked as yoga masks
   * on HTTP. graphql-js `execute`, not yoga's executor: that one would start a new subscription for
   * a subscription operation, where this runs its selection against the changed job.
   */
  async render(job: JobRow): Promise<Buffer> {
    this.owner.executions++;
    let result: ExecutionResult;
    try {
      result = await execute({
        schema: this.spec.schema,
        document: this.spec.document,
        operationName: this.spec.operationName,
        variableValues: this.spec.variableValues,
        contextValue: this.spec.contextValue,
        rootValue: job,
      });
    } catch (error) {
      this.logger.error({ err: error }, 'subscription execution failed');
      result = { data: null, errors: [clientError(error)] };
    }
    return Buffer.from(JSON.stringify(clientResult(result)));
  }

  leave(member: Member): void {
    this.members.delete(member);
    if (this.members.size === 0) this.owner.removeGroup(this);
  }
}

const NEXT_TAIL = Buffer.from('}');

/** The socket closed before the subscription could join. */
export class SocketClosedError extends Error {
  constructor() {
    super('The socket closed.');
  }
}

/**
 * One graphql-ws subscription (socket + id) in a group: its session's output is the socket, behind
 * the subscription's own `next` head.
 */
export class Member implements SessionOutput<Buffer> {
  readonly session: JobUpdatedSession<Buffer>;
  private readonly head: Buffer;
  /** Unique per operation on its socket (the client may reuse `id` once it completed). */
  private readonly operationId: string;
  private ended = false;
  private resolveEnd: (() => void) | undefined;
  private readonly onClosed = () => this.leave();

  constructor(
    private readonly group: Group,
    request: JobUpdatedRequest,
    private readonly sender: SocketSender,
    { id, operationId }: { id: string; operationId: string },
    /**
     * The member leaves when any of these aborts (its socket closed, its operation completed). A
     * listener on each, not AbortSignal.any: that one's signal, weak references and finalization
     * cells cost every idle subscriber about half a KiB.
     */
    private readonly closed: readonly AbortSignal[],
    revocations: RevocationWatch,
  ) {
    this.operationId = operationId;
    this.head = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);
    this.session = new JobUpdatedSession(request, this, revocations);
    for (const signal of closed) signal.addEventListener('abort', this.onClosed, { once: true });
  }

  /** One dispatch's states (`payloads[i]` renders `jobs[i]`); the sender writes them at once. */
  offer(jobs: readonly JobRow[], payloads: readonly Buffer[]): void {
    this.session.offer(jobs, payloads);
  }

  send(jobId: string, payload: Buffer): void {
    this.sender.send(this.operationId, jobId, Buffer.concat([this.head, payload, NEXT_TAIL]));
  }

  bytesOf(payload: Buffer): number {
    return this.head.length + payload.length + NEXT_TAIL.length;
  }

  writable(): Promise<void> {
    return this.sender.writable();
  }

  /**
   * The key was revoked. The member leaves quietly: its connection was authenticated by the same key,
   * and the same check of revocations closes the socket with 4401, which tells the client (before or
   * after graphql-ws's `complete` for this operation, whichever watcher runs first).
   */
  end(): void {
    this.leave();
  }

  /**
   * The handle graphql-ws iterates. It yields nothing (frames are written directly) and finishes
   * when the subscription ends; graphql-ws calls `return` on complete or disconnect.
   */
  handle(): AsyncGenerator<never, void, unknown> {
    const end = new Promise<void>((resolve) => (this.resolveEnd = resolve));
    const iterator: AsyncGenerator<never, void, unknown> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        if (!this.ended) await end;
        return { done: true, value: undefined };
      },
      return: () => {
        this.leave();
        return Promise.resolve({ done: true, value: undefined });
      },
      throw: (error: unknown) => {
        this.leave();
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      },
    };
    return iterator;
  }

  leave(): void {
    if (this.ended) return;
    this.ended = true;
    this.session.close();
    for (const signal of this.closed) signal.removeEventListener('abort', this.onClosed);
    this.sender.drop(this.operationId);
    this.group.leave(this);
    this.resolveEnd?.();
  }
}
