import type { GraphiQLOptions } from 'graphql-yoga';
import { type CacheableBody, cacheableBody } from '../http/respond.js';
import { graphiqlPageHeaders } from '../http/security-headers.js';

const HEADERS = JSON.stringify({ 'X-API-Key': 'paste a key from `npx jobs-gateway keys create`' }, null, 2);

/** What GraphiQL opens on (when the browser has no tabs of its own stored): the README's examples. */
const EXAMPLES = [
  `# The workspace's jobs, newest first, with their steps (needs jobs:read).
# Put your key in the Headers tab below, then run.
query Jobs {
  jobs(limit: 20) {
    id
    type
    displayTitle
    status
    progress
    currentStep
    steps { id key name status }
    startedAt
    completedAt
    error
    changeCursor
  }
}
`,
  `# Every change of the workspace's jobs, live (here over Server-Sent Events).
# Pass the largest changeCursor you have seen as \`after\` to resume without a gap.
subscription Watch {
  jobUpdated {
    id
    status
    progress
    currentStep
    steps { id key name status }
    changeCursor
  }
}
`,
];

const GRAPHIQL_OPTIONS: GraphiQLOptions = {
  title: 'jobs-gateway',
  headers: HEADERS,
  defaultHeaders: HEADERS,
  defaultQuery: EXAMPLES[0],
  defaultTabs: EXAMPLES.map((query) => ({ query, headers: HEADERS })),
  subscriptionsProtocol: 'SSE',
};

/**
 * GraphiQL bundled with the server rather than loaded from a CDN: it works offline and behind
 * strict networks. Its page (the editor inline, about 9 MB) is rendered when a browser first asks
 * for it (held from the start it was 40 MB of an idle server), then served compressed (about 2 MB
 * with gzip) and revalidated by ETag.
 */
export function graphiqlPage(frameAncestors: string): CacheableBody {
  return cacheableBody('text/html; charset=utf-8', async () => (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(GRAPHIQL_OPTIONS), {
    headersFor: (html) => graphiqlPageHeaders(html, frameAncestors),
  });
}
