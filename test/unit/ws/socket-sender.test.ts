import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { FLUSH_INTERVAL_MS, PENDING_BYTES_TOTAL_FACTOR, STALLED_MS } from '../../../src/limits/fixed.js';
import { CloseCode } from '../../../src/ws/close-codes.js';
import { SendBacklog, type SocketSender } from '../../../src/ws/socket-sender.js';
import { turns } from '../../helpers/turns.js';
import { type WsPair, type WsPairs, startWsPairs } from '../../helpers/ws-pair.js';

// SocketSender on real sockets: a `ws` server and client on loopback. A reader that stops is a
// client whose socket is paused: the kernel's buffers fill, then Node's, and `bufferedAmount` rises.

/** WS_MAX_BUFFERED_BYTES of these tests: small, so that a few frames pass it. */
const LIMIT = 4 * 1024;
const AN_HOUR = 3_600_000;

/** A text frame of exactly `bytes` bytes that starts with its label. */
const frame = (label: string, bytes: number) => Buffer.from(`${label}|${'x'.repeat(bytes - label.length - 1)}`);
const labelOf = (message: string) => message.slice(0, message.indexOf('|'));

let pairs: WsPairs;
const backlogs: SendBacklog[] = [];
const backlogOf = (maxCongestedMs = AN_HOUR) => {
  const backlog = new SendBacklog({ maxBufferedBytes: LIMIT, maxCongestedMs });
  backlogs.push(backlog);
  return backlog;
};

beforeEach(async () => {
  pairs = await startWsPairs();
});
afterEach(async () => {
  vi.useRealTimers();
  for (const backlog of backlogs.splice(0)) backlog.stop();
  await pairs.close();
});

/**
 * Stops the client reading, then sends frames (each with room, so none waits) until Node holds
 * more than LIMIT for the socket: what the kernel would take, it has. Returns their labels. By
 * default each is larger than the socket's highWaterMark: only a write past it makes the socket
 * emit `drain` once Node's buffer has emptied (see the test of `drain` below).
 */
async function stall(pair: WsPair, sender: SocketSender, { id = 'fill', bytes = 2 * pair.connection.writableHighWaterMark } = {}): Promise<string[]> {
  pair.client.pause();
  const sent: string[] = [];
  for (let i = 0; i < 5_000; i++) {
    const label = `${id}-${i}`;
    sender.send(id, label, frame(label, bytes));
    sent.push(label);
    await turns(); // the cork is lifted and the kernel takes what it has room for
    if (pair.server.bufferedAmount > LIMIT) return sent;
  }
  throw new Error('the socket never filled up');
}

it('writes frames in the order they were sent, the frames of one turn in one corked write', async () => {
  const pair = await pairs.connect();
  const backlog = backlogOf();
  const sender = backlog.sender(pair.server, pair.connection);
  const sent: string[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 10; i++) {
      const label = `f${round}-${i}`;
      sender.send('sub', `job-${i}`, frame(label, 100));
      sent.push(label);
    }
    // Under the limit: nothing waits, everything sits in the corked connection until the next tick.
    expect(pair.connection.writableCorked).toBe(1);
    expect(sender.congested).toBe(false);
    expect(sender.pendingBytes).toBe(0);
    await new Promise<void>((resolve) => process.nextTick(resolve));
    expect(pair.connection.writableCorked).toBe(0);
  }
  expect((await pair.receivedCount(sent.length)).map(labelOf)).toEqual(sent);
  expect(backlog.pendingBytes).toBe(0);
  expect(backlog.waitingSockets).toBe(0);
});

it('keeps frames while the reader has stopped, the newest per subscription and job, counted in pendingBytes; they go out in order of latest arrival once it reads', async () => {
  const pair = await pairs.connect();
  const backlog = backlogOf();
  const sender = backlog.sender(pair.server, pair.connection);
  const filled = await stall(pair, sender);
  expect(sender.pendingBytes).toBe(0);
  expect(sender.congested).toBe(true);

  sender.send('sub-a', 'job-1', frame('a1', 1_000));
  sender.send('sub-b', 'job-1', frame('b1-old', 2_000));
  sender.send('sub-a', 'job-2', frame('a2', 3_000));
  expect(sender.pendingBytes).toBe(6_000);
  expect(backlog.pendingBytes).toBe(6_000);
  expect(backlog.waitingSockets).toBe(1);
  // A newer state of the same subscription and job replaces the waiting one, and queues behind the rest.
  sender.send('sub-b', 'job-1', frame('b1', 500));
  expect(sender.pendingBytes).toBe(4_500);
  expect(backlog.pendingBytes).toBe(4_500);

  let writable = false;
  const whenWritable = sender.writable().then(() => (writable = true));
  await turns(5);
  expect(writable).toBe(false);
  expect(pair.received.length).toBeLessThan(filled.length);

  pair.client.resume();
  await whenWritable;
  expect(sender.congested).toBe(false);
  expect(sender.pendingBytes).toBe(0);
  expect(backlog.pendingBytes).toBe(0);
  const received = (await pair.receivedCount(filled.length + 3)).map(labelOf);
  expect(received).toEqual([...filled, 'a1', 'a2', 'b1']);
  // The backlog forgets the socket at its next flush.
  await vi.waitFor(() => expect(backlog.waitingSockets).toBe(0));
});

it('sends what waited as soon as the connection drains, without waiting for the backlog’s next flush', async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); // the backlog's flushes never come
  const pair = await pairs.connect();
  const backlog = backlogOf();
  const sender = backlog.sender(pair.server, pair.connection);
  const filled = await stall(pair, sender);
  sender.send('sub', 'job-1', frame('waited', 1_000));
  expect(sender.pendingBytes).toBe(1_000);
  pair.client.resume();
  expect((await pair.receivedCount(filled.length + 1)).map(labelOf)).toEqual([...filled, 'waited']);
  expect(backlog.pendingBytes).toBe(0);
});

it('queues a frame behind those that wait even when the socket has room again; the backlog’s next flush sends them in order', async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  const pair = await pairs.connect();
  const backlog = backlogOf();
  const sender = backlog.sender(pair.server, pair.connection);
  // Frames under the socket's highWaterMark: once the reader is back, Node's buffer empties without a `drain`.
  const filled = await stall(pair, sender, { bytes: 2 * LIMIT });
  sender.send('sub', 'job-1', frame('older', 1_000));
  pair.client.resume();
  await pair.receivedCount(filled.length);
  while (pair.server.bufferedAmount > 0) await turns();
  expect(sender.pendingBytes).toBe(1_000);

  sender.send('sub', 'job-2', frame('newer', 1_000));
  expect(sender.pendingBytes).toBe(2_000);
  vi.advanceTimersByTime(FLUSH_INTERVAL_MS);
  expect(sender.pendingBytes).toBe(0);
  expect((await pair.receivedCount(filled.length + 2)).slice(filled.length).map(labelOf)).toEqual(['older', 'newer']);
});

it('forgets the waiting frames of a subscription that ended, and only its own', async () => {
  const pair = await pairs.connect();
  const backlog = backlogOf();
  const sender = backlog.sender(pair.server, pair.connection);
  const filled = await stall(pair, sender);
  sender.send('sub-a', 'job-1', frame('a1', 1_000));
  sender.send('sub-ab', 'job-1', frame('ab1', 700));
  sender.send('sub-a', 'job-2', frame('a2', 1_000));
  sender.send('sub-b', 'job-1', frame('b1', 300));
  sender.drop('sub-a');
  expect(sender.pendingBytes).toBe(1_000);
  expect(backlog.pendingBytes).toBe(1_000);
  pair.client.resume();
  expect((await pair.receivedCount(filled.length + 2)).map(labelOf)).toEqual([...filled, 'ab1', 'b1']);
  expect(backlog.pendingBytes).toBe(0);
});

it('closes with SlowConsumer (4008) a socket whose reader took nothing for maxCongestedMs, at the next flush, and drops what waited', async () => {
  // Time moves only when the test moves it; the sockets' I/O is real.
  vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
  const pair = await pairs.connect();
  const backlog = backlogOf(2_000);
  const sender = backlog.sender(pair.server, pair.connection);
  const filled = await stall(pair, sender);
  sender.send('sub', 'job-1', frame('late', 1_000));
  expect(backlog.pendingBytes).toBe(1_000);

  vi.advanceTimersByTime(2_000); // 40 flushes, the last one exactly maxCongestedMs after the frame began to wait
  expect(pair.server.readyState).toBe(WebSocket.OPEN);
  expect(backlog.slowConsumerCloses).toBe(0);
  expect(sender.pendingBytes).toBe(1_000);

  vi.advanceTimersByTime(FLUSH_INTERVAL_MS);
  expect(pair.server.readyState).toBe(WebSocket.CLOSING);
  expect(backlog.slowConsumerCloses).toBe(1);
  expect(sender.pendingBytes).toBe(0);
  expect(backlog.pendingBytes).toBe(0);
  expect(backlog.waitingSockets).toBe(0);
  // A closing socket takes nothing more.
  sender.send('sub', 'job-2', frame('after-close', 100));
  expect(sender.pendingBytes).toBe(0);

  vi.useRealTimers();
  pair.client.resume();
  const closed = await pair.whenClosed();
  expect(closed.code).toBe(CloseCode.SlowConsumer);
  expect(closed.reason).toMatch(/^Slow consumer/);
  expect(pair.received.map(labelOf)).toEqual(filled);
});

it('past maxBufferedBytes × PENDING_BYTES_TOTAL_FACTOR in all, closes the socket stalled for STALLED_MS that holds the most, and no more than that takes', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
  const backlog = backlogOf();
  expect(backlog.maxPendingBytes).toBe(LIMIT * PENDING_BYTES_TOTAL_FACTOR);
  const [big, small] = [await pairs.connect(), await pairs.connect()];
  const bigSender = backlog.sender(big.server, big.connection);
  const smallSender = backlog.sender(small.server, small.connection);
  const bigFilled = await stall(big, bigSender);
  const smallFilled = await stall(small, smallSender);

  // 70% of the bound waits for one reader, 40% for the other.
  const piece = Math.floor(backlog.maxPendingBytes / 10);
  for (let i = 0; i < 7; i++) bigSender.send('sub', `job-${i}`, frame(`big-${i}`, piece));
  for (let i = 0; i < 4; i++) smallSender.send('sub', `job-${i}`, frame(`small-${i}`, piece));
  expect(backlog.pendingBytes).toBe(11 * piece);
  expect(backlog.waitingSockets).toBe(2);

  // Over the bound, but neither has been without room for STALLED_MS yet.
  vi.advanceTimersByTime(STALLED_MS - FLUSH_INTERVAL_MS);
  expect(backlog.slowConsumerCloses).toBe(0);
  expect(backlog.pendingBytes).toBe(11 * piece);

  vi.advanceTimersByTime(FLUSH_INTERVAL_MS);
  expect(backlog.slowConsumerCloses).toBe(1);
  expect(big.server.readyState).toBe(WebSocket.CLOSING);
  expect(small.server.readyState).toBe(WebSocket.OPEN);
  expect(backlog.pendingBytes).toBe(4 * piece);
  expect(smallSender.pendingBytes).toBe(4 * piece);
  expect(backlog.waitingSockets).toBe(1);

  // Under the bound now: the other reader keeps its frames however long it takes (up to maxCongestedMs).
  vi.advanceTimersByTime(10 * STALLED_MS);
  expect(backlog.slowConsumerCloses).toBe(1);
  expect(small.server.readyState).toBe(WebSocket.OPEN);

  vi.useRealTimers();
  small.client.resume();
  big.client.resume();
  expect((await small.receivedCount(smallFilled.length + 4)).map(labelOf)).toEqual([...smallFilled, 'small-0', 'small-1', 'small-2', 'small-3']);
  expect((await big.whenClosed()).code).toBe(CloseCode.SlowConsumer);
  expect(big.received.map(labelOf)).toEqual(bigFilled);
  expect(backlog.pendingBytes).toBe(0);
});

it('gives the bytes of waiting frames back as soon as their socket closes, and lets whoever waits for room go on', async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] }); // no flush of the backlog's meanwhile
  const pair = await pairs.connect();
  const backlog = backlogOf();
  const sender = backlog.sender(pair.server, pair.connection);
  await stall(pair, sender);
  sender.send('sub', 'job-1', frame('a', 2_000));
  sender.send('sub', 'job-2', frame('b', 3_000));
  expect(backlog.pendingBytes).toBe(5_000);
  const whenWritable = sender.writable();

  const serverClosed = new Promise((resolve) => pair.server.once('close', resolve));
  pair.client.terminate();
  await serverClosed;
  expect(sender.pendingBytes).toBe(0);
  expect(backlog.pendingBytes).toBe(0);
  expect(sender.congested).toBe(false);
  await whenWritable;
  await sender.writable();
  // The backlog forgets the socket at its next flush, and with nothing waiting its interval stops.
  expect(backlog.waitingSockets).toBe(1);
  expect(vi.getTimerCount()).toBe(1);
  vi.advanceTimersByTime(FLUSH_INTERVAL_MS);
  expect(backlog.waitingSockets).toBe(0);
  expect(vi.getTimerCount()).toBe(0);
});
