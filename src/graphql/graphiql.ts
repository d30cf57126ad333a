import type { GraphiQLOptions } from 'graphql-yoga';
import { type CacheableBody, cacheableBody } from '../http/respond.js';
import { graphiqlPageHeaders } from '../http/security-headers.js';

/** What GraphiQL opens on (when the browser has no tabs of its own stored): the README's examples. */
const EXAMPLES = [
  `# The workspace's jobs, newest first, with their steps (needs jobs:read).
# Paste your key into the "API key" box at the top once (every tab sends it), then run.
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
  defaultQuery: EXAMPLES[0],
  defaultTabs: EXAMPLES.map((query) => ({ query })),
  // The key lives in the box above the editor (sessionStorage), not in the tabs' headers: headers
  // typed into a tab are not written to localStorage either.
  shouldPersistHeaders: false,
  subscriptionsProtocol: 'SSE',
};

/**
 * One key for every tab. GraphiQL's headers belong to each tab, and it fetches the schema once, at
 * start: so a box above it keeps the key (in this tab's sessionStorage, where the dashboard at /
 * keeps it too), every request GraphiQL makes to /graphql (queries, the schema, SSE subscriptions:
 * all through `globalThis.fetch`) carries it, and setting it fetches the schema again (GraphiQL's
 * own re-fetch button). Without a key, requests are answered here with what to do.
 */
const KEY_BAR = `<form id="api-key" class="api-key-bar">
  <label for="api-key-input">API key</label>
  <input id="api-key-input" type="password" autocomplete="off" spellcheck="false" placeholder="jg_... (npx jobs-gateway keys create, or the one npm run demo printed)">
  <button type="submit">Use this key</button>
  <span id="api-key-status" role="status"></span>
</form>
<style>
  .api-key-bar { box-sizing: border-box; height: 2.75rem; display: flex; gap: 0.5rem; align-items: center; padding: 0 0.75rem; font: 14px system-ui, sans-serif; border-bottom: 1px solid #8884; }
  .api-key-bar input { flex: 0 1 28rem; min-width: 8rem; font: inherit; padding: 0.2rem 0.4rem; }
  .api-key-bar span { opacity: 0.75; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
  .graphiql-container { height: calc(100vh - 2.75rem); }
</style>
<script>
(() => {
  const STORAGE = 'jobs-gateway:key';
  const form = document.getElementById('api-key');
  const input = document.getElementById('api-key-input');
  const status = document.getElementById('api-key-status');
  const key = () => sessionStorage.getItem(STORAGE) || '';
  const say = () => (status.textContent = key() ? 'Every tab sends this key.' : 'Paste a key to run queries and see the schema (Docs).');
  input.value = key();
  say();
  const NO_KEY = JSON.stringify({ errors: [{ message: 'No API key yet: paste one into the API key box at the top of the page and press Enter. Every tab then sends it, and Docs loads the schema.' }] });
  const send = globalThis.fetch.bind(globalThis);
  globalThis.fetch = (resource, init) => {
    const url = new URL(resource instanceof Request ? resource.url : String(resource), location.href);
    if (url.origin !== location.origin || url.pathname !== '/graphql') return send(resource, init);
    const headers = new Headers(init?.headers ?? (resource instanceof Request ? resource.headers : undefined));
    if (key()) headers.set('x-api-key', key());
    else if (!headers.has('x-api-key') && !headers.has('authorization')) return Promise.resolve(new Response(NO_KEY, { headers: { 'content-type': 'application/json' } }));
    return send(resource, { ...init, headers });
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) sessionStorage.setItem(STORAGE, value);
    else sessionStorage.removeItem(STORAGE);
    say();
    // Fetch the schema again with the new key (once GraphiQL is up and not fetching already; before
    // it is up, its first fetch takes the key).
    const refetch = (tries) => {
      const button = document.querySelector('button[aria-label^="Re-fetch GraphQL schema"]');
      if (button && !button.disabled) button.click();
      else if (button && tries > 0) setTimeout(() => refetch(tries - 1), 100);
    };
    refetch(100);
  });
})();
</script>
`;

/**
 * GraphiQL bundled with the server rather than loaded from a CDN: it works offline and behind
 * strict networks. Its page (the editor inline, about 9 MB) is rendered when a browser first asks
 * for it (held from the start it was 40 MB of an idle server), then served compressed (about 2 MB
 * with gzip) and revalidated by ETag.
 */
export function graphiqlPage(frameAncestors: string): CacheableBody {
  return cacheableBody(
    'text/html; charset=utf-8',
    async () => {
      const html = (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(GRAPHIQL_OPTIONS);
      const root = '<div id="root"></div>';
      if (!html.includes(root)) throw new Error('GraphiQL page without <div id="root"></div>: the API key box has nowhere to go');
      return html.replace(root, () => `${KEY_BAR}${root}`);
    },
    { headersFor: (html) => graphiqlPageHeaders(html, frameAncestors) },
  );
}
