import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SEQ_SPAN } from '../../../src/jobs/change-position.js';
import { FeedFrontier, type FeedRead, type Horizon } from '../../../src/jobs/feed-frontier.js';
import { workspaceKey } from '../../../src/jobs/workspace-key.js';

// The change feed's rule, checked against a model of the database: job_touch() draws a ticket,
// takes the registration lock, then draws each change's position; a commit becomes visible before
// its locks are released; job_feed_horizon() reads the sequence, then the locks, and the feed's
// read takes its snapshot after that. Any interleaving of those steps must dispatch every committed
// change exactly once, in position order per workspace key, and never one that could still be
// preceded by a smaller one.

const EPOCH = 7n;
/** The migration rounds tickets to 4,096; a small bucket makes the rounding matter here. */
const BUCKET = 4n;
const WORKSPACES = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000003'];

interface Change {
  workspace: string;
  position: bigint;
  /** When it became visible, in the model's steps. */
  committedAt?: number;
}

interface Writer {
  /** The workspaces it writes, one change each, in order. */
  writes: number[];
  commit: boolean;
}

class Model {
  sequence = 0n;
  /** Steps taken so far (a clock). */
  steps = 0;
  readonly locks = new Map<number, Map<string, bigint>>();
  readonly committed: Change[] = [];
  private readonly pending = new Map<number, Change[]>();

  /** Each writer's remaining steps, as closures run one at a time. */
  script(id: number, writer: Writer): Array<() => void> {
    const steps: Array<() => void> = [];
    let ticket = 0n;
    for (const w of writer.writes) {
      const workspace = WORKSPACES[w]!;
      steps.push(() => (ticket = ++this.sequence));
      steps.push(() => {
        const held = this.locks.get(id) ?? new Map<string, bigint>();
        const lock = `${workspaceKey(workspace)}:${ticket / BUCKET}`;
        held.set(lock, (ticket / BUCKET) * BUCKET);
        this.locks.set(id, held);
      });
      steps.push(() => {
        const list = this.pending.get(id) ?? [];
        list.push({ workspace, position: EPOCH * SEQ_SPAN + ++this.sequence });
        this.pending.set(id, list);
      });
    }
    steps.push(() => {
      if (writer.commit) this.committed.push(...(this.pending.get(id) ?? []).map((change) => ({ ...change, committedAt: this.steps })));
      this.pending.delete(id);
    });
    steps.push(() => this.locks.delete(id));
    return steps;
  }

  registrations(): Horizon['registrations'] {
    return [...this.locks.entries()].flatMap(([pid, held]) => [...held.entries()].map(([lock, ticket]) => ({ key: Number(lock.split(':')[0]), ticket, pid })));
  }
}

/** The feed's statement over a snapshot: the ranges `read` asks for, in position order, at most `limit`. */
function select(snapshot: readonly Change[], read: FeedRead, limit: number): Change[] {
  return snapshot
    .filter((change) => {
      const range = read.apart.get(workspaceKey(change.workspace)) ?? read.all;
      return change.position > range.after && change.position <= range.upTo;
    })
    .sort((a, b) => (a.position < b.position ? -1 : 1))
    .slice(0, limit);
}

describe('the feed frontier', () => {
  it('dispatches every committed change once, in order per workspace, whatever the interleaving of writers, commits and the feed’s steps (property)', () => {
    const writer = fc.record({ writes: fc.array(fc.integer({ min: 0, max: WORKSPACES.length - 1 }), { minLength: 1, maxLength: 4 }), commit: fc.boolean() });
    fc.assert(
      fc.property(
        fc.array(writer, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 200 }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(20),
        (writers, picks, limit, startAfter) => {
          const model = new Model();
          const scripts = writers.map((w, id) => model.script(id, w));
          const frontier = new FeedFrontier();
          const dispatched: Change[] = [];
          const dispatchedUpTo = new Map<string, bigint>();
          let history: Map<string, bigint> | undefined;
          let startedAt = 0;

          // The feed, as steps: the sequence, then the locks, then the snapshot and its read.
          let horizon: { upTo: bigint; registrations?: Horizon['registrations'] } | undefined;
          const feedStep = () => {
            if (!horizon) return void (horizon = { upTo: model.sequence });
            if (!horizon.registrations) {
              horizon.registrations = model.registrations();
              if (!history) startedAt = model.steps;
              return;
            }
            const taken: Horizon = { epoch: EPOCH, upTo: horizon.upTo, registrations: horizon.registrations };
            horizon = undefined;
            if (!history) {
              frontier.start(taken);
              history = new Map(WORKSPACES.map((w) => [w, frontier.finalFor(w)]));
              return;
            }
            const read = frontier.next(taken);
            const rows = select(model.committed, read, limit);
            frontier.advance(read, rows.length < limit, rows.at(-1)?.position);
            for (const row of rows) {
              // Per workspace, in position order, and past what a client could have resumed from before.
              expect(row.position).toBeGreaterThan(dispatchedUpTo.get(row.workspace) ?? history.get(row.workspace)!);
              dispatchedUpTo.set(row.workspace, row.position);
              dispatched.push(row);
            }
            for (const w of WORKSPACES) expect(frontier.finalFor(w)).toBeGreaterThanOrEqual(dispatchedUpTo.get(w) ?? 0n);
          };

          for (const [i, pick] of picks.entries()) {
            const live = scripts.filter((script) => script.length > 0);
            model.steps++;
            // Half of the steps are the feed's, which starts only after `startAfter` picks:
            // transactions may be half done by then.
            const actor = pick % (2 * live.length + 1);
            if (actor < live.length) live[actor]!.shift()!();
            else if (i >= startAfter) feedStep();
          }
          for (const script of scripts) {
            while (script.length > 0) {
              model.steps++;
              script.shift()!();
            }
          }
          // Caught up: steps until a whole read finds nothing more.
          for (let i = 0; i < 3 * (model.committed.length + 4) * 3; i++) feedStep();

          // Owed: every change that committed after the feed looked at the registrations when it
          // started, and those before that it did not count as history.
          const owed = model.committed.filter((c) => c.committedAt! >= startedAt || c.position > history!.get(c.workspace)!);
          expect(dispatched.map((c) => c.position).sort()).toEqual(owed.map((c) => c.position).sort());
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('holds back only the keys that have a registration below a change', () => {
    const frontier = new FeedFrontier();
    frontier.start({ epoch: EPOCH, upTo: 10n, registrations: [] });
    const [held, free] = WORKSPACES;
    const read = frontier.next({ epoch: EPOCH, upTo: 20n, registrations: [{ key: workspaceKey(held!), ticket: 12n, pid: 1 }] });
    expect(read.all).toEqual({ after: EPOCH * SEQ_SPAN + 10n, upTo: EPOCH * SEQ_SPAN + 20n });
    expect(read.apart.get(workspaceKey(held!))).toEqual({ after: EPOCH * SEQ_SPAN + 10n, upTo: EPOCH * SEQ_SPAN + 12n });
    frontier.advance(read, true);
    expect(frontier.finalFor(free!)).toBe(EPOCH * SEQ_SPAN + 20n);
    expect(frontier.finalFor(held!)).toBe(EPOCH * SEQ_SPAN + 12n);
    // Once the registration is gone, the held key catches up from where it stood.
    const after = frontier.next({ epoch: EPOCH, upTo: 25n, registrations: [] });
    expect(after.apart.get(workspaceKey(held!))).toEqual({ after: EPOCH * SEQ_SPAN + 12n, upTo: EPOCH * SEQ_SPAN + 25n });
    frontier.advance(after, true);
    expect(frontier.finalFor(held!)).toBe(EPOCH * SEQ_SPAN + 25n);
  });
});
