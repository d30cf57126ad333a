import { SERIALIZE } from '../limits/fixed.js';
import { cpuTurns, microsSince } from '../live/turn-slicer.js';

/**
 * A value serialized as UTF-8 JSON, in the pieces it was made in. The pieces are never joined: a
 * profile of the heavy-results attacker showed `Buffer.concat` of a 12 MB body holding the event
 * loop 33 to 76 ms, and writing it to the socket whole another 20 ms; a piece (about
 * `SERIALIZE.chunkChars`) is written at a time as the socket drains (http/respond.ts).
 */
export interface JsonBody {
  readonly chunks: readonly Buffer[];
  readonly bytes: number;
}

/** A body, or the verdict that the value is over the size it was allowed. */
export type SerializedBody = JsonBody | { tooLarge: true };

/** Bodies already made (or being made), by result object; forgotten with the object. */
const bodies = new WeakMap<object, Promise<SerializedBody>>();

/**
 * `value` as UTF-8 JSON, made once per object and at most `maxBytes` long: the response-size
 * check, the response cache's size and the response itself share one body, and a cached result is
 * the same object on every hit, so a hit costs a copy to the socket and no serialization.
 *
 * The body is made in slices of the event loop (see `slices`): one `JSON.stringify` of a 13 MB
 * result held the loop about 50 ms, and the first requests of a burst, all missing the cache at
 * once, held it for their sum (815 ms in test/bench/RESULTS.md, heavy results). It is encoded to
 * UTF-8 here, a slice at a time, so that writing it to a socket encodes nothing more.
 *
 * Results are never changed once executed and checked, which the memo relies on. Every caller in
 * a process passes the same `maxBytes` (MAX_RESPONSE_BYTES), which the memo relies on too.
 */
export function serializedBody(value: object, maxBytes: number): Promise<SerializedBody> {
  let made = bodies.get(value);
  if (!made) bodies.set(value, (made = encodeInSlices(value, maxBytes)));
  return made;
}

async function encodeInSlices(value: object, maxBytes: number): Promise<SerializedBody> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let pending: string[] = [];
  let pendingChars = 0;
  const flush = () => {
    const chunk = Buffer.from(pending.join(''));
    if (chunk.length > 0) chunks.push(chunk);
    bytes += chunk.length;
    pending = [];
    pendingChars = 0;
  };
  // Every body being made shares the process's slice of each turn with the others (cpuTurns).
  const step = cpuTurns.loop();
  try {
    let pieceStarted = performance.now();
    for (const piece of slices(value, SERIALIZE.walkedLevels)) {
      pending.push(piece);
      pendingChars += piece.length;
      // Characters bound bytes from below: past the limit in characters is past it in bytes.
      if (bytes + pendingChars > maxBytes) return { tooLarge: true };
      if (pendingChars >= SERIALIZE.chunkChars) flush();
      const wait = step(microsSince(pieceStarted));
      if (wait) await wait;
      pieceStarted = performance.now();
    }
  } catch (error) {
    // Over V8's string limit ("Invalid string length"): the same verdict, never a 500.
    if (error instanceof RangeError) return { tooLarge: true };
    throw error;
  }
  flush();
  if (bytes > maxBytes) return { tooLarge: true };
  return { chunks, bytes };
}

/**
 * The JSON text of `value` in pieces, exactly as `JSON.stringify(value)` would write it: the
 * outer `levels` of objects and arrays are walked here, and what lies below (a job, a list item)
 * is stringified natively, whole. Written here because the streaming stringifiers on npm walk the
 * whole value in JavaScript, several times slower than V8's own JSON.stringify; only the outer
 * levels, where a GraphQL result's lists are, need to be walked for every piece to be small (the
 * size of one job, which the job limits bound).
 */
function* slices(value: unknown, levels: number): Generator<string> {
  if (levels === 0 || value === null || typeof value !== 'object' || typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    yield JSON.stringify(value) ?? 'null';
    return;
  }
  if (Array.isArray(value)) {
    yield '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) yield ',';
      yield* slices(omitted(value[i]) ? null : value[i], levels - 1);
    }
    yield ']';
    return;
  }
  let separator = '{';
  for (const key of Object.keys(value)) {
    const item = (value as Record<string, unknown>)[key];
    if (omitted(item)) continue;
    yield `${separator}${JSON.stringify(key)}:`;
    separator = ',';
    yield* slices(item, levels - 1);
  }
  yield separator === '{' ? '{}' : '}';
}

/** What JSON.stringify leaves out of an object (and writes as null in an array). */
function omitted(value: unknown): boolean {
  return value === undefined || typeof value === 'function' || typeof value === 'symbol';
}
