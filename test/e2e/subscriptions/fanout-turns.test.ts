import { afterAll, beforeAll, expect, it } from 'vitest';
import { CreateJobDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { FANOUT_SENDS_PER_TURN } from '../../../src/limits/fixed.js';
import { describeDb } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';
import { countTurns } from '../../helpers/turns.js';
import { TestSocket } from '../../helpers/ws-client.js';
import { oneStepJob } from '../../helpers/jobs.js';

// A change to a workspace with many subscribers is as many socket writes. Written in one go they
// held the event loop (requests, other workspaces, new connections) for as long as they took; the
// fan-out now writes FANOUT_SENDS_PER_TURN sockets and lets the loop turn. The gateway runs in this
// process, so the turns the loop takes can be counted here: the subscribers' frames must arrive
// over several turns, and a turn must come between any two slices.

const SOCKETS = 8;
const PER_SOCKET = 100;

describeDb('fan-out in slices', () => {
  let t: TestApp;
  const sockets: TestSocket[] = [];

  beforeAll(async () => {
    t = await startTestApp({ env: { MAX_SUBSCRIPTIONS_PER_CONNECTION: String(PER_SOCKET), RATE_LIMIT_PER_KEY: '0' } });
  });
  afterAll(() => {
    for (const socket of sockets) socket.close();
  });

  it('writes a change to 800 subscriptions over several turns of the event loop, every one delivered', async () => {
    expect(SOCKETS * PER_SOCKET).toBeGreaterThan(2 * FANOUT_SENDS_PER_TURN);
    const key = await t.createKey(`turns-${Math.random().toString(36).slice(2, 8)}`);
    const job = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'Many eyes', competitorId: 'c-1' }) }, key)).createJob;

    for (let s = 0; s < SOCKETS; s++) {
      const socket = await TestSocket.open(t.url, { apiKey: key });
      sockets.push(socket);
      for (let i = 0; i < PER_SOCKET; i++) socket.subscribe(`s${i}`, `subscription { jobUpdated(id: "${job.id}") { id progress } }`);
    }
    const { multiplexer } = t.app.webSockets;
    for (let waited = 0; multiplexer.memberCount < SOCKETS * PER_SOCKET; waited++) {
      if (waited > 400) throw new Error(`only ${multiplexer.memberCount} subscribed`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }

    // Count the event loop's turns (one setImmediate per turn) and note the turn each frame arrives in.
    const turns = countTurns();
    const arrivals: number[] = [];
    for (const socket of sockets) {
      socket.socket.on('message', (data) => {
        if ((data as Buffer).toString().includes('"progress":50')) arrivals.push(turns.turn);
      });
    }
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 50 } }, key);
    for (const socket of sockets)
      for (let i = 0; i < PER_SOCKET; i++) await socket.waitFor((m) => m.id === `s${i}` && JSON.stringify(m.payload).includes('"progress":50'));
    turns.stop();

    expect(arrivals).toHaveLength(SOCKETS * PER_SOCKET);
    // In one go, all 800 frames were written in one turn and read in the next. In slices of 256
    // they are written over at least four turns.
    const arrivalTurns = new Set(arrivals);
    expect(arrivalTurns.size).toBeGreaterThanOrEqual(Math.ceil((SOCKETS * PER_SOCKET) / FANOUT_SENDS_PER_TURN) - 1);
    // No turn carries much more than one slice (a socket's frames of two slices may be read together).
    const perTurn = new Map<number, number>();
    for (const at of arrivals) perTurn.set(at, (perTurn.get(at) ?? 0) + 1);
    expect(Math.max(...perTurn.values())).toBeLessThanOrEqual(2 * FANOUT_SENDS_PER_TURN);
  });
});
