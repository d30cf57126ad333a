import { expect } from 'vitest';

export interface SseEvent {
  event: string;
  data: unknown;
}

/**
 * A GraphQL subscription over Server-Sent Events, as curl or EventSource would hold it.
 * `next(n)` waits for the first n `next` payloads; `rest()` reads until the server ends the stream.
 */
export async function openEventStream(url: string, apiKey: string, query: string, variables?: Record<string, unknown>) {
  const controller = new AbortController();
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'x-api-key': apiKey },
    body: JSON.stringify({ query, variables }),
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/event-stream');
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let text = '';
  let ended = false;

  /** Reads one chunk; false once the server has ended the stream. */
  async function read(): Promise<boolean> {
    const { value, done } = await reader.read();
    if (done) return !(ended = true);
    text += decoder.decode(value, { stream: true });
    const blocks = text.split('\n\n');
    text = blocks.pop()!;
    for (const block of blocks) {
      const lines = block.split('\n');
      const event = lines.find((line) => line.startsWith('event: '))?.slice(7);
      const data = lines.find((line) => line.startsWith('data: '))?.slice(6);
      if (event) events.push({ event, data: data ? JSON.parse(data) : undefined });
    }
    return true;
  }
  const nexts = () => events.filter((e) => e.event === 'next').map((e) => e.data);

  return {
    events,
    async next<T = unknown>(count: number): Promise<T[]> {
      while (nexts().length < count) if (!(await read())) throw new Error(`the stream ended after ${nexts().length} events`);
      return nexts().slice(0, count) as T[];
    },
    async rest(): Promise<SseEvent[]> {
      while (!ended && (await read()));
      return events;
    },
    close: () => controller.abort(),
  };
}
