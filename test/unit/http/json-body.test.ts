import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { serializedBody, type JsonBody } from '../../../src/graphql/serialized.js';
import { sendJsonBody } from '../../../src/http/respond.js';

// A large body leaves the server a piece at a time as the socket drains, never joined into one
// buffer (a 12 MB join held the event loop up to 76 ms), and arrives whole and exact.

it('writes a 13 MB body piece by piece to a slow reader: every byte arrives, in order, with its length', async () => {
  const result = { data: { jobs: Array.from({ length: 200 }, (_, i) => ({ id: `job-${i}`, metadata: { report: `${i}`.repeat((64 * 1024) / 4) } })) } };
  const body = (await serializedBody(result, 64 * 1024 * 1024)) as JsonBody;
  expect(body.chunks.length).toBeGreaterThan(4);
  const written: number[] = [];
  const server = http.createServer((_req, res) => {
    const write = res.write.bind(res) as (chunk: Buffer) => boolean;
    res.write = ((chunk: Buffer) => {
      written.push(chunk.length);
      return write(chunk);
    }) as typeof res.write;
    void sendJsonBody(res, 200, body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const received = await new Promise<{ length: string | undefined; text: string }>((resolve, reject) => {
      http.get(`http://127.0.0.1:${port}/`, (res) => {
        const parts: Buffer[] = [];
        // A slow reader: the server has to wait for the socket to drain between pieces.
        res.on('data', (part: Buffer) => {
          parts.push(part);
          res.pause();
          setTimeout(() => res.resume(), 1);
        });
        res.on('end', () => resolve({ length: res.headers['content-length'], text: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      });
    });
    expect(received.length).toBe(String(body.bytes));
    expect(received.text).toBe(JSON.stringify(result));
    // One write per piece, none of them the whole body.
    expect(written).toEqual(body.chunks.map((chunk) => chunk.length));
  } finally {
    server.close();
  }
});

it('settles when the client goes away in the middle of a body, without an error', async () => {
  const result = { data: { jobs: Array.from({ length: 200 }, (_, i) => ({ id: `job-${i}`, metadata: { report: 'x'.repeat(64 * 1024) } })) } };
  const body = (await serializedBody(result, 64 * 1024 * 1024)) as JsonBody;
  let sent: Promise<void> | undefined;
  const server = http.createServer((_req, res) => {
    sent = sendJsonBody(res, 200, body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => {
      const req = http.get(`http://127.0.0.1:${port}/`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
    });
    await expect(sent).resolves.toBeUndefined();
  } finally {
    server.close();
  }
});
