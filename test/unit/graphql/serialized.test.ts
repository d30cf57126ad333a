import fc from 'fast-check';
import { expect, it } from 'vitest';
import { type JsonBody, serializedBody } from '../../../src/graphql/serialized.js';

/** Values as GraphQL results and REST bodies hold them, with what JSON.stringify leaves out or calls. */
const value = fc.letrec((tie) => ({
  any: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue({ maxDepth: 3 }),
    fc.constant(undefined),
    fc.constant(() => 1),
    fc.constant(new Date(0)),
    fc.array(tie('any'), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 5 }), tie('any'), { maxKeys: 5 }),
  ),
}));

it('writes exactly what JSON.stringify writes, as UTF-8, for any value (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.dictionary(fc.string({ maxLength: 5 }), value.any, { maxKeys: 6 }), async (object) => {
      const made = await serializedBody(object, 1 << 20);
      expect('chunks' in made && Buffer.concat(made.chunks).toString('utf8')).toBe(JSON.stringify(object));
    }),
    { numRuns: 1_000 },
  );
});

it('refuses exactly the bodies over the limit in bytes, not characters (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.string({ unit: 'binary', maxLength: 40 }), { maxLength: 20 }), fc.nat({ max: 600 }), async (items, maxBytes) => {
      const object = { data: { items } };
      const made = await serializedBody(object, maxBytes);
      expect('tooLarge' in made).toBe(Buffer.byteLength(JSON.stringify(object)) > maxBytes);
    }),
    { numRuns: 1_000 },
  );
});

it('makes a large body in slices: the event loop turns while it is made', async () => {
  const job = (i: number) => ({ id: `job-${i}`, metadata: { report: 'x'.repeat(64 * 1024 - 32) } });
  const result = { data: { jobs: Array.from({ length: 200 }, (_, i) => job(i)) } };
  let turns = 0;
  const ticker = setInterval(() => turns++, 0);
  try {
    const made = serializedBody(result, 64 * 1024 * 1024);
    const body = (await made) as JsonBody;
    expect(body.bytes).toBe(Buffer.byteLength(JSON.stringify(result)));
    expect(Buffer.concat(body.chunks).toString('utf8')).toBe(JSON.stringify(result));
    // 13 MB is several CPU_SLICE_MS of work: timers got their turns in between.
    expect(turns).toBeGreaterThan(0);
    // Once per object: asking again is the same body, not a second serialization.
    expect(await serializedBody(result, 64 * 1024 * 1024)).toBe(await made);
  } finally {
    clearInterval(ticker);
  }
});
