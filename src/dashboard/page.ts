import path from 'node:path';
import { type CacheableBody, cacheableBody } from '../http/respond.js';
import { dashboardPageHeaders } from '../http/security-headers.js';
import fs from 'node:fs/promises';
import { JOB_FILTERS, JOB_FILTER_NAMES } from '../jobs/job-filter.js';
import { JobStatus } from '../jobs/model.js';
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
${filterFields()}
        <button type="submit" class="secondary">Filter</button>
      </form>
      <button id="sign-out" type="button" class="secondary">Forget key</button>
    </div>
    <p id="count" aria-live="polite"></p>
    <p id="empty" hidden>No jobs match.</p>
    <ol id="jobs" aria-label="Jobs, newest first"></ol>
    <button id="load-older" type="button" class="secondary" hidden>Load older jobs</button>
  </section>
</main>
</body>
</html>
`;

/** A form field per filter the gateway declares (src/jobs/job-filter.ts): a list for the status, else text. */
function filterFields(): string {
  return JOB_FILTER_NAMES.map((name) => {
    const { kind, label, placeholder } = JOB_FILTERS[name];
    const id = `filter-${name}`;
    const field =
      kind === 'JobStatus'
        ? `<select id="${id}"><option value="">${placeholder}</option>${Object.values(JobStatus)
            .map((status) => `<option value="${status}">${status.toLowerCase()}</option>`)
            .join('')}</select>`
        : `<input id="${id}" placeholder="${placeholder}">`;
    return `        <label for="${id}">${label} ${field}</label>`;
  }).join('\n');
}

/** The page and its two bundled files, each cacheable; the files are read at their first request. */
export function dashboardFiles(frameAncestors: string): Map<string, CacheableBody> {
  const built = (file: string) => () => fs.readFile(path.join(packagePath(path.join('dist', 'dashboard')), file), 'utf8');
  return new Map([
    ['/', cacheableBody('text/html; charset=utf-8', () => PAGE, { maxAgeSeconds: 60, headersFor: () => dashboardPageHeaders(frameAncestors) })],
    ['/dashboard/app.js', cacheableBody('text/javascript; charset=utf-8', built('app.js'))],
    ['/dashboard/app.css', cacheableBody('text/css; charset=utf-8', built('app.css'))],
  ]);
}
