import fc from 'fast-check';
import { expect, it } from 'vitest';
import { WorkspaceResponseCache } from '../../../src/graphql/plugins/response-cache.js';

// The store's one promise: a result is never served after a change to its workspace that came
// after the request began, however reads, changes and evictions of remembered workspaces interleave.
it('never serves a result older than the last invalidation of its workspace (property)', async () => {
  type Op =
    | { kind: 'begin'; ws: number; query: number }
    | { kind: 'finish'; pick: number }
    | { kind: 'settle' }
    | { kind: 'invalidate'; ws: number }
    | { kind: 'get'; ws: number; query: number };
  const ws = fc.nat({ max: 4 });
  const query = fc.nat({ max: 2 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('begin' as const), ws, query }),
    fc.record({ kind: fc.constant('finish' as const), pick: fc.nat() }),
    // A result is stored once its body is made: changes can come in between.
    fc.record({ kind: fc.constant('settle' as const) }),
    fc.record({ kind: fc.constant('invalidate' as const), ws }),
    fc.record({ kind: fc.constant('get' as const), ws, query }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 80 }), fc.integer({ min: 1, max: 3 }), async (ops, tracked) => {
      // Fewer remembered workspaces than workspaces: generations get evicted and fall to the floor.
      const cache = new WorkspaceResponseCache({ maxBytes: 1 << 20, maxResponseBytes: 1 << 20, ttlMs: 60_000, trackedWorkspaces: tracked });
      const storing: Promise<void>[] = [];
      const version = [0, 0, 0, 0, 0];
      const pending: Array<{ key: string; ws: number; version: number }> = [];
      let served = 0;
      for (const o of ops) {
        if (o.kind === 'begin') {
          // What a request does first: its key, then (later) the database read, which sees the version of now.
          pending.push({ key: cache.keyFor(`w${o.ws}`, 'jobs:read', `q${o.query}`), ws: o.ws, version: version[o.ws]! });
        } else if (o.kind === 'finish' && pending.length > 0) {
          const [read] = pending.splice(o.pick % pending.length, 1);
          storing.push(cache.set(read!.key, { data: { version: read!.version } }, [], Number.POSITIVE_INFINITY));
        } else if (o.kind === 'settle') {
          await Promise.all(storing.splice(0));
        } else if (o.kind === 'invalidate') {
          version[o.ws]!++;
          cache.invalidateWorkspace(`w${o.ws}`);
        } else if (o.kind === 'get') {
          const result = cache.get(cache.keyFor(`w${o.ws}`, 'jobs:read', `q${o.query}`));
          if (result) {
            served++;
            expect((result.data as { version: number }).version).toBe(version[o.ws]);
          }
        }
      }
      return served >= 0;
    }),
    { numRuns: 2_000 },
  );
});

it("holds only results of each workspace's current generation: a change frees the others at once (property)", async () => {
  type Op = { kind: 'store'; ws: number; query: number } | { kind: 'invalidate'; ws: number };
  const ws = fc.nat({ max: 3 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('store' as const), ws, query: fc.nat({ max: 4 }) }),
    fc.record({ kind: fc.constant('invalidate' as const), ws }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
      const cache = new WorkspaceResponseCache({ maxBytes: 1 << 20, maxResponseBytes: 1 << 20, ttlMs: 60_000 });
      // What should be held: per workspace, the queries stored since its last change.
      const held = new Map<number, Set<number>>();
      for (const o of ops) {
        if (o.kind === 'store') {
          await cache.set(cache.keyFor(`w${o.ws}`, 'jobs:read', `q${o.query}`), { data: { list: 'x'.repeat(100) } }, [], Number.POSITIVE_INFINITY);
          held.set(o.ws, (held.get(o.ws) ?? new Set()).add(o.query));
        } else {
          cache.invalidateWorkspace(`w${o.ws}`);
          held.delete(o.ws);
        }
        const expected = [...held.values()].reduce((sum, queries) => sum + queries.size, 0);
        expect(cache.entries).toBe(expected);
        // And what is held is served: another workspace's change strands nothing.
        for (const [w, queries] of held) for (const q of queries) expect(cache.get(cache.keyFor(`w${w}`, 'jobs:read', `q${q}`))).toBeDefined();
        if (expected === 0) expect(cache.bytes).toBe(0);
      }
    }),
    { numRuns: 500 },
  );
});

it('serves a result stored before any change, to the same workspace, scopes and operation only', async () => {
  const cache = new WorkspaceResponseCache({ maxBytes: 1 << 20, maxResponseBytes: 1 << 20, ttlMs: 60_000 });
  const key = cache.keyFor('w1', 'jobs:read', 'q');
  await cache.set(key, { data: { jobs: [] } }, [], Number.POSITIVE_INFINITY);
  expect(cache.get(cache.keyFor('w1', 'jobs:read', 'q'))).toEqual({ data: { jobs: [] } });
  expect(cache.get(cache.keyFor('w2', 'jobs:read', 'q'))).toBeUndefined();
  expect(cache.get(cache.keyFor('w1', 'jobs:cancel,jobs:read', 'q'))).toBeUndefined();
  expect(cache.get(cache.keyFor('w1', 'jobs:read', 'other'))).toBeUndefined();
  expect([cache.hits, cache.misses]).toEqual([1, 3]);
});
