import path from 'node:path';
import { type CacheableBody, cacheableBody } from '../http/respond.js';
import { dashboardPageHeaders } from '../http/security-headers.js';
import fs from 'node:fs/promises';
import { packagePath } from '../package-path.js';

/** The dashboard's page: a shell around the script that esbuild bundled at install (src/dashboard/app.ts). */
const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>jobs-gateway · jobs</title>
<link rel="stylesheet" href="/dashboard/app.css">
<script type="module" src="/dashboard/app.js"></script>
</head>
<body>
<header class="top">
  <h1>Jobs</h1>
  <span id="connection" role="status" aria-live="polite" data-state="signed-out">Not connected</span>
</header>
<main>
  <p id="error" role="alert" hidden></p>
  <form id="sign-in" hidden>
    <label for="key">API key (kept in this tab only)
      <input id="key" name="key" type="password" autocomplete="off" spellcheck="false" required placeholder="jg_...">
    </label>
    <button type="submit">Show jobs</button>
  </form>
  <section id="board" hidden aria-labelledby="count">
    <div class="toolbar">
      <form id="filters" role="search" aria-label="Filter jobs">
        <label for="filter-status">Status
          <select id="filter-status"><option value="">any</option><option value="RUNNING">running</option><option value="COMPLETED">completed</option><option value="FAILED">failed</option></select>
        </label>
        <label for="filter-type">Type <input id="filter-type" placeholder="e.g. collect"></label>
        <label for="filter-competitor">Competitor <input id="filter-competitor" placeholder="competitor id"></label>
        <button type="submit" class="secondary">Filter</button>
      </form>
      <button id="sign-out" type="button" class="secondary">Forget key</button>
    </div>
    <p id="count" aria-live="polite"></p>
    <p id="empty" hidden>No jobs match.</p>
    <ol id="jobs" aria-label="Jobs, newest first"></ol>
  </section>
</main>
</body>
</html>
`;

/** The page and its two bundled files, each cacheable; the files are read at their first request. */
export function dashboardFiles(frameAncestors: string): Map<string, CacheableBody> {
  const built = (file: string) => () => fs.readFile(path.join(packagePath(path.join('dist', 'dashboard')), file), 'utf8');
  return new Map([
    ['/', cacheableBody('text/html; charset=utf-8', () => PAGE, { maxAgeSeconds: 60, headersFor: () => dashboardPageHeaders(frameAncestors) })],
    ['/dashboard/app.js', cacheableBody('text/javascript; charset=utf-8', built('app.js'))],
    ['/dashboard/app.css', cacheableBody('text/css; charset=utf-8', built('app.css'))],
  ]);
}
