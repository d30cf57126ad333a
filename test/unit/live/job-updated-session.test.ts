import { expect, it } from 'vitest';
import type { RevocationWatch } from '../../../src/auth/revocation-watch.js';
import type { JobRow } from '../../../src/jobs/model.js';
import { JobUpdatedSession, type ReplaySource, type SessionOutput } from '../../../src/live/job-updated-session.js';
import { CPU_SLICE_MS } from '../../../src/limits/fixed.js';
import { countTurns } from '../../helpers/turns.js';

// Replays that start at once share the event loop's turns: a hundred resumes of large jobs, each
// with room to send and budget to spend, rendered 250 jobs of 64 KiB in one turn (158 ms) before
// their rendering was sliced (test/bench/RESULTS.md, metadata replays).

const RENDER_MS = 0.5;
const SESSIONS = 10;
const JOBS = 30;

/** Rendering that costs CPU, as executing a selection of 64 KiB of metadata does. */
function busyRender(job: JobRow): string {
  const until = performance.now() + RENDER_MS;
  while (performance.now() < until);
  return job.id;
}

const job = (i: number) => ({ id: `job-${i}`, changeXid: 1n, changeSeq: BigInt(i + 1) }) as JobRow;
const replays: ReplaySource = {
  replay: () => Promise.resolve(Array.from({ length: JOBS }, (_, i) => job(i))),
  paced: () => Promise.resolve(undefined),
};
// The session only asks to be told of its key's revocation; nothing is revoked here.
const revocations = { watch: () => () => undefined } as unknown as RevocationWatch;

it('renders the replays of sessions that start at once a slice of each turn at a time, and sends every job in order', async () => {
  const turns = countTurns();
  const rendersInTurn = new Map<number, number>();
  const sent: string[][] = [];
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, s) => {
      const mine: string[] = [];
      sent.push(mine);
      const output: SessionOutput<string> = {
        send: (id) => mine.push(id),
        writable: () => Promise.resolve(),
        bytesOf: () => 64 * 1024,
        end: () => undefined,
      };
      const session = new JobUpdatedSession({ keyId: `key-${s}`, workspaceId: 'w', filter: {}, after: 0n }, output, revocations);
      await session.start(replays, (row) => {
        rendersInTurn.set(turns.turn, (rendersInTurn.get(turns.turn) ?? 0) + 1);
        return busyRender(row);
      });
    }),
  );
  turns.stop();
  for (const ids of sent) expect(ids).toEqual(Array.from({ length: JOBS }, (_, i) => `job-${i}`));
  // 300 renders of 0.5 ms: at most CPU_SLICE_MS of them a turn, and one more per session that waits.
  const most = Math.max(...rendersInTurn.values());
  expect(most).toBeLessThanOrEqual(CPU_SLICE_MS / RENDER_MS + SESSIONS);
  expect(rendersInTurn.size).toBeGreaterThan((SESSIONS * JOBS * RENDER_MS) / (CPU_SLICE_MS + SESSIONS * RENDER_MS));
});
