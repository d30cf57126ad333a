/** The JSON text of results already serialized, by result object; forgotten with the object. */
const texts = new WeakMap<object, string>();

/**
 * `result` as JSON, computed once per result object: the response-size check, the response
 * cache's size and the response itself all need the same text, and a cached result is the same
 * object on every hit, so a hit is answered from its text instead of a new JSON.stringify
 * (test/bench/RESULTS.md, heavy results: three serializations of a 13 MB result per request
 * before). Results are never changed once executed and checked, which this relies on.
 */
export function serialized(result: object): string {
  let text = texts.get(result);
  if (text === undefined) {
    text = JSON.stringify(result);
    texts.set(result, text);
  }
  return text;
}
