import fc from 'fast-check';
import { expect, it } from 'vitest';
import { ReplayGate } from '../../../src/live/replay-gate.js';

interface Change {
  job: string;
  cursor: bigint;
}

/**
 * A resumed subscription in every interleaving the gateway allows. Changes 1..M (cursor = position)
 * touch jobs a, b, c. The client resumes after cursor A. When it subscribes, the feed has dispatched
 * up to F (possibly below A: a change committed, and seen by the client through another instance,
 * before this one dispatched it). The replay reads the database when it has committed up to R
 * (R >= A and R >= F). The feed dispatches on meanwhile; the gate releases when the feed is at D
 * (before or after R), and then everything up to M is dispatched live.
 */
const scenario = fc
  .array(fc.constantFrom('a', 'b', 'c'), { minLength: 1, maxLength: 25 })
  .chain((jobs) => {
    const m = jobs.length;
    return fc.record({
      jobs: fc.constant(jobs),
      after: fc.integer({ min: 0, max: m }),
      fed: fc.integer({ min: 0, max: m }),
      released: fc.integer({ min: 0, max: m }),
      read: fc.integer({ min: 0, max: m }),
    });
  })
  .map(({ jobs, after, fed, released, read }) => ({
    changes: jobs.map((job, i): Change => ({ job, cursor: BigInt(i + 1) })),
    after: BigInt(after),
    fed: BigInt(fed),
    released: BigInt(Math.max(fed, released)),
    read: BigInt(Math.max(after, fed, read)),
  }));

it('a resumed subscription gets nothing at or below `after`, no state twice, every job’s latest state, and every change after the replay; an open gate sends everything', () => {
  fc.assert(
    fc.property(scenario, ({ changes, after, fed, released, read }) => {
      const gate = new ReplayGate<Change>(after);
      const out: Change[] = [];
      // Once `open`, the gate must send everything: the multiplexer stops consulting it then.
      let opened = false;
      const offer = (change: Change) => {
        const verdict = gate.offer(change.job, change.cursor, change);
        if (opened) expect(verdict).toBe('send');
        if (verdict === 'send') out.push(change);
        opened ||= gate.open;
      };

      for (const change of changes) if (change.cursor > fed && change.cursor <= released) offer(change);
      // The replay: each job's state as of `read`, when it changed after `after`, in cursor order.
      const latestAt = new Map<string, Change>();
      for (const change of changes) if (change.cursor <= read) latestAt.set(change.job, change);
      const replay = [...latestAt.values()].filter((c) => c.cursor > after).sort((x, y) => Number(x.cursor - y.cursor));
      out.push(...replay);
      out.push(...gate.release(new Map(replay.map((c) => [c.job, c.cursor]))).map(([, change]) => change));
      for (const change of changes) if (change.cursor > released) offer(change);

      expect(out.filter((c) => c.cursor <= after)).toEqual([]);
      for (const job of ['a', 'b', 'c']) {
        const cursors = out.filter((c) => c.job === job).map((c) => c.cursor);
        expect(cursors).toEqual([...new Set(cursors)].sort((x, y) => Number(x - y))); // in order, never twice
        const latest = changes.filter((c) => c.job === job).at(-1);
        if (latest && latest.cursor > after) expect(cursors.at(-1)).toBe(latest.cursor);
      }
      // Live delivery is not merged once the gate is open: every change past the replay arrives.
      const horizon = read > released ? read : released;
      for (const change of changes) if (change.cursor > horizon) expect(out).toContainEqual(change);
    }),
    { numRuns: 500 },
  );
});
