import type { DocumentNode, ExecutionArgs, ExecutionResult } from 'graphql';
import { positionOf } from '../jobs/change-position.js';
import type { JobFilter } from '../jobs/job-filter.js';
import type { JobRow } from '../jobs/model.js';
import { ReplayGate } from '../live/replay-gate.js';
import type { LiveJobs, LiveSubscriber } from '../live/live-jobs.js';
import type { Logger } from '../logger.js';
import type { SocketSender } from './socket-sender.js';

type Execute = (args: ExecutionArgs) => ExecutionResult | Promise<ExecutionResult> | unknown;

export interface GroupSpec {
  /** Subscribers with equal keys share one execution and one serialized payload per change. */
  key: string;
  workspaceId: string;
  filter: JobFilter;
  document: DocumentNode;
  operationName: string | null | undefined;
  variableValues: Record<string, unknown> | undefined;
  contextValue: unknown;
  schema: ExecutionArgs['schema'];
  execute: Execute;
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

  constructor(
    private readonly live: LiveJobs,
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
   * Adds a member; with `after`, replays before it receives live payloads. Rejects (having
   * removed the member) when the replay fails. The member leaves when `closed` aborts (its socket
   * closed), whatever graphql-ws did with the operation.
   */
  async join(
    spec: GroupSpec,
    sender: SocketSender,
    ids: { id: string; operationId: string },
    after: bigint | undefined,
    closed: AbortSignal,
  ): Promise<Member> {
    if (closed.aborted) throw new SocketClosedError();
    let group = this.groups.get(spec.key);
    if (!group) {
      group = new Group(spec, this, this.logger);
      this.groups.set(spec.key, group);
      group.unregister = this.live.add(group);
    }
    const member = new Member(group, sender, ids, after, closed);
    group.members.add(member);
    if (after !== undefined) {
      try {
        await member.replay(after, this.live);
      } catch (error) {
        member.leave();
        throw error;
      }
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

  constructor(
    readonly spec: GroupSpec,
    private readonly owner: Multiplexer,
    private readonly logger: Logger,
  ) {}

  get workspaceId() {
    return this.spec.workspaceId;
  }

  get filter() {
    return this.spec.filter;
  }

  deliver(jobs: readonly JobRow[]): void {
    this.tail = this.tail
      .then(async () => {
        if (this.members.size === 0) return;
        const payloads: Buffer[] = [];
        for (const job of jobs) payloads.push(await this.render(job));
        for (const member of this.members) member.offer(jobs, payloads);
      })
      // One failed delivery must not stop the chain (and with it every later one).
      .catch((error: unknown) => this.logger.error({ err: error }, 'subscription delivery failed'));
  }

  /** The serialized execution result of the group's document for one job state. */
  async render(job: JobRow): Promise<Buffer> {
    this.owner.executions++;
    try {
      const result = (await this.spec.execute({
        schema: this.spec.schema,
        document: this.spec.document,
        operationName: this.spec.operationName,
        variableValues: this.spec.variableValues,
        contextValue: this.spec.contextValue,
        rootValue: job,
      })) as ExecutionResult;
      return Buffer.from(JSON.stringify(result));
    } catch (error) {
      this.logger.error({ err: error }, 'subscription execution failed');
      return Buffer.from(JSON.stringify({ data: null, errors: [{ message: 'Unexpected error.' }] }));
    }
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

/** One graphql-ws subscription (socket + id) in a group. */
export class Member {
  private readonly head: Buffer;
  /** Unique per operation on its socket (the client may reuse `id` once it completed). */
  private readonly operationId: string;
  private gate: ReplayGate<{ jobId: string; payload: Buffer }> | undefined;
  private ended = false;
  private resolveEnd: (() => void) | undefined;
  private readonly onClosed = () => this.leave();

  constructor(
    private readonly group: Group,
    private readonly sender: SocketSender,
    { id, operationId }: { id: string; operationId: string },
    after: bigint | undefined,
    private readonly closed: AbortSignal,
  ) {
    this.operationId = operationId;
    this.head = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":`);
    if (after !== undefined) this.gate = new ReplayGate(after);
    closed.addEventListener('abort', this.onClosed, { once: true });
  }

  /** One dispatch's states (`payloads[i]` renders `jobs[i]`); the sender writes them at once. */
  offer(jobs: readonly JobRow[], payloads: readonly Buffer[]): void {
    if (this.ended) return;
    // Runs per subscriber and dispatch: a plain loop, and no gate once it passes everything (a
    // resumed dashboard would otherwise consult it, and allocate for it, on every change for good).
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      const payload = payloads[i]!;
      if (this.gate) {
        if (this.gate.offer(job.id, positionOf(job), { jobId: job.id, payload }) !== 'send') continue;
        if (this.gate.open) this.gate = undefined;
      }
      this.send(job.id, payload);
    }
  }

  async replay(after: bigint, live: LiveJobs): Promise<void> {
    const jobs = await live.replay(this.group.workspaceId, this.group.filter, after);
    // At the reader's pace: a resume over thousands of jobs is rendered and sent one job at a time
    // while the socket has room, not queued whole (live changes meanwhile wait in the gate, merged).
    for (const job of jobs) {
      await this.sender.writable();
      const payload = await this.group.render(job);
      if (this.ended) return;
      this.send(job.id, payload);
    }
    if (this.ended) return;
    const replayed = new Map(jobs.map((job) => [job.id, positionOf(job)]));
    for (const { jobId, payload } of this.gate?.release(replayed) ?? []) this.send(jobId, payload);
  }

  /**
   * The handle graphql-ws iterates. It yields nothing (frames are written directly) and finishes
   * when the subscription ends; graphql-ws calls `return` on complete or disconnect.
   */
  handle(): AsyncGenerator<never, void, unknown> {
    const end = new Promise<void>((resolve) => (this.resolveEnd = resolve));
    const member = this;
    const iterator: AsyncGenerator<never, void, unknown> = {
      [Symbol.asyncIterator]() {
        return iterator;
      },
      async next() {
        if (!member.ended) await end;
        return { done: true, value: undefined };
      },
      async return() {
        member.leave();
        return { done: true, value: undefined };
      },
      async throw(error: unknown) {
        member.leave();
        throw error;
      },
    };
    return iterator;
  }

  leave(): void {
    if (this.ended) return;
    this.ended = true;
    this.closed.removeEventListener('abort', this.onClosed);
    this.sender.drop(this.operationId);
    this.group.leave(this);
    this.resolveEnd?.();
  }

  private send(jobId: string, payload: Buffer): void {
    this.sender.send(this.operationId, jobId, Buffer.concat([this.head, payload, NEXT_TAIL]));
  }
}
