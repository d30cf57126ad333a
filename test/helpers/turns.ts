/**
 * Counts the turns of this process's event loop (one setImmediate per turn) until `stop`; `turn`
 * is the current count.
 */
export function countTurns(): { readonly turn: number; stop(): void } {
  let turn = 0;
  let counting = true;
  const tick = () => {
    turn++;
    if (counting) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get turn() {
      return turn;
    },
    stop: () => {
      counting = false;
    },
  };
}

/** Resolves after `count` turns of the event loop (one setImmediate each): I/O callbacks of those turns have run. */
export async function turns(count = 1): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
