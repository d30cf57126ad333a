import { expect } from 'vitest';

/** One scrape of GET /metrics: the value of each sample, by its name and labels as written. */
export async function scrape(url: string): Promise<{ text: string; value: (sample: string) => number }> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');
  const text = await response.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return {
    text,
    value: (sample) => {
      const value = samples.get(sample);
      if (value === undefined) throw new Error(`no sample ${sample} in:\n${text}`);
      return value;
    },
  };
}

/** The subscriptions (multiplexed and streams) and multiplexed groups an instance holds right now. */
export async function liveSubscriptions(url: string): Promise<{ multiplexed: number; streams: number; groups: number }> {
  const { value } = await scrape(url);
  return {
    multiplexed: value('jobs_gateway_subscriptions{delivery="multiplexed"}'),
    streams: value('jobs_gateway_subscriptions{delivery="stream"}'),
    groups: value('jobs_gateway_subscription_groups'),
  };
}
