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
