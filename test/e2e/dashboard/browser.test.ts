import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompleteJobDocument, CreateAccessTokenDocument, CreateJobDocument, UpdateJobProgressDocument } from '../../../src/graphql/operations.generated.js';
import { positionOf } from '../../../src/jobs/change-position.js';
import { freshDatabase } from '../../helpers/databases.js';
import { graphqlOk } from '../../helpers/http.js';
import { startTestApp, workspaceIdOf } from '../../helpers/test-app.js';
import { repoRoot } from '../../helpers/paths.js';
import { oneStepJob } from '../../helpers/jobs.js';

// Debian's Chromium (`apt-get install chromium`; .ci/run installs it). Without it these tests are
// reported as skipped; REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure.
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveBrowser = existsSync(executablePath);
if (!haveBrowser && process.env.REQUIRE_BROWSER === '1') throw new Error(`No Chromium at ${executablePath} (REQUIRE_BROWSER=1)`);
if (!haveBrowser) console.warn(`\n!!! No Chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM_PATH): the browser tests are SKIPPED.\n`);

/** Screenshots, kept for a look after the run (gitignored). */
const artifacts = path.join(repoRoot, 'test', 'artifacts');

describe.skipIf(!haveBrowser)('in a real browser', () => {
  let browser: Browser;

  beforeAll(async () => {
    await fs.mkdir(artifacts, { recursive: true });
    browser = await chromium.launch({
      executablePath,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** Records every Content-Security-Policy violation of the page, from its first script on. */
  const watchPolicy = async (page: Page): Promise<() => Promise<string[]>> => {
    await page.addInitScript(() => {
      const seen: string[] = [];
      (window as unknown as { policyViolations: string[] }).policyViolations = seen;
      document.addEventListener('securitypolicyviolation', (event) => seen.push(`${event.violatedDirective} ${event.blockedURI}`));
    });
    return () => page.evaluate(() => (window as unknown as { policyViolations: string[] }).policyViolations);
  };

  it('GraphiQL loads from the gateway alone and runs a query', async () => {
    const t = await startTestApp();
    const key = await t.createKey('graphiql');
    const page = await browser.newPage();
    const violations = await watchPolicy(page);
    const foreign: string[] = [];
    page.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith(t.url) && !url.startsWith('data:') && !url.startsWith(`blob:${t.url}`)) foreign.push(url);
    });
    await page.goto(`${t.url}/graphql`);
    await page.waitForSelector('.graphiql-container', { timeout: 20_000 });
    expect(foreign).toEqual([]);
    // It opens on working examples, not GraphiQL's welcome text: the jobs query and the subscription.
    await page.waitForSelector('.graphiql-query-editor', { timeout: 20_000 });
    // (The editor renders spaces as no-break spaces.)
    const editorText = async () => (await page.locator('.graphiql-query-editor').innerText()).replace(/\s+/g, ' ');
    await expect.poll(editorText, { timeout: 10_000 }).toContain('query Jobs {');
    expect(await editorText()).toContain('steps { id key name status }');
    expect(await editorText()).not.toContain('in-browser tool');
    const tabs = await page.locator('.graphiql-tab').allInnerTexts();
    expect(tabs.join(' ')).toContain('Jobs');
    expect(tabs.join(' ')).toContain('Watch');
    await page.screenshot({ path: path.join(artifacts, 'graphiql.png') });
    // What GraphiQL sends, from inside the page: the endpoint answers it.
    const result = await page.evaluate(async (apiKey) => {
      const send = (headers: Record<string, string>) =>
        fetch('/graphql', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"query":"{ __typename }"}' }).then((r) =>
          r.json(),
        );
      return { withKey: await send({ 'x-api-key': apiKey }), without: await send({}) };
    }, key);
    expect(result.withKey).toEqual({ data: { __typename: 'Query' } });
    // Without a key (none in the page's API key box either) the page answers itself, saying what to do.
    expect(result.without).toEqual({ errors: [{ message: expect.stringContaining('paste one into the API key box') }] });
    // Everything above ran under the page's Content-Security-Policy, which let all of it through.
    expect(await violations()).toEqual([]);
    await page.close();
  });

  it(
    'GraphiQL: one key, pasted once, loads the schema (Docs) without a re-fetch and serves every tab, the subscription included',
    { timeout: 90_000 },
    async () => {
      const t = await startTestApp();
      const key = await t.createKey('graphiql-key');
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => pageErrors.push(String(error)));
      const violations = await watchPolicy(page);
      const unauthenticated: string[] = [];
      page.on('response', (response) => response.status() === 401 && unauthenticated.push(response.url()));
      await page.goto(`${t.url}/graphql`);
      await page.waitForSelector('.graphiql-query-editor', { timeout: 20_000 });
      const text = async (selector: string) => (await page.locator(selector).first().innerText()).replace(/\s+/g, ' ');

      // It opens saying what to do, not with an error of the server's: no request went out without a key.
      await expect.poll(() => text('.graphiql-response'), { timeout: 20_000 }).toContain('paste one into the API key box');
      expect(await text('.graphiql-response')).not.toContain('UNAUTHENTICATED');
      expect(unauthenticated).toEqual([]);

      // Paste the key once: Docs shows the schema, with no re-fetch by hand.
      await page.getByLabel('API key').fill(key);
      await page.getByLabel('API key').press('Enter');
      await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
      await expect.poll(() => text('.graphiql-doc-explorer'), { timeout: 20_000 }).toMatch(/Query/);
      expect(await text('.graphiql-doc-explorer')).not.toContain('Error fetching schema');

      // The subscription tab (its headers never touched) runs with the same key and receives a change.
      await page.locator('.graphiql-tab', { hasText: 'Watch' }).click();
      await expect.poll(() => text('.graphiql-query-editor'), { timeout: 10_000 }).toContain('subscription Watch');
      // Running once the button offers to stop it; a click that landed before the editor was ready is made again.
      const execute = page.locator('.graphiql-execute-button');
      await expect
        .poll(
          async () => {
            const label = (await execute.getAttribute('aria-label')) ?? '';
            if (label.startsWith('Execute')) await execute.click();
            return label;
          },
          { timeout: 20_000, interval: 1_000 },
        )
        .toMatch(/^Stop/);
      const job = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'Seen in GraphiQL', steps: [] });
      // Until the stream is live a change sends nothing: keep moving the job until one arrives.
      // (The response pane wraps long lines, so compare without whitespace.)
      const received = async () => (await text('.graphiql-response')).replace(/ /g, '');
      for (let progress = 1; !(await received()).includes(`"jobUpdated":{"id":"${job.id}"`); progress++) {
        expect(progress, 'no update reached the subscription tab').toBeLessThan(80);
        await t.app.jobs.updateProgress(workspaceId, job.id, { progress });
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(unauthenticated).toEqual([]);
      await page.screenshot({ path: path.join(artifacts, 'graphiql-key.png') });

      // The key stays in this tab's sessionStorage (where the dashboard keeps it), never in localStorage.
      expect(await page.evaluate(() => sessionStorage.getItem('jobs-gateway:key'))).toBe(key);
      expect(await page.evaluate(() => JSON.stringify({ ...localStorage }))).not.toContain(key);
      await page.locator('.graphiql-execute-button').click(); // stops the subscription
      expect(pageErrors).toEqual([]);
      expect(await violations()).toEqual([]);
      await page.close();
      await t.close();
    },
  );

  it('the live dashboard at / lists the jobs, moves with the worker, cancels, filters, and survives a restart', { timeout: 120_000 }, async () => {
    const database = await freshDatabase();
    let t = await startTestApp({ database });
    const port = new URL(t.url).port;
    const key = await t.createKey('dashboard'); // jobs:read and jobs:cancel
    const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
    const steps = [
      { id: 'collect', name: 'Collecting Intel' },
      { id: 'ingest', name: 'Processing Intel' },
    ];
    const running = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'Analyzing Competitor', competitorId: 'c1', steps });
    const failed = await t.app.jobs.create(workspaceId, { type: 'discover-products', displayTitle: 'Discovering Products', steps: [] });
    await t.app.jobs.fail(workspaceId, failed.id, 'Scraper timed out');

    const tab = await browser.newPage();
    const pageErrors: string[] = [];
    tab.on('pageerror', (error) => pageErrors.push(String(error)));
    const violations = await watchPolicy(tab);
    await tab.goto(`${t.url}/`);
    // Paste the key, and submit from the keyboard.
    await tab.getByLabel('API key').fill(key);
    await tab.getByLabel('API key').press('Enter');
    await expect.poll(() => tab.locator('#connection').innerText(), { timeout: 20_000 }).toBe('Live');
    await expect.poll(() => tab.locator('li.job').count()).toBe(2);
    // The key stays in this tab's sessionStorage, never in the URL.
    expect(tab.url()).not.toContain(key);
    expect(await tab.evaluate(() => sessionStorage.getItem('jobs-gateway:key'))).toBe(key);
    const cardOf = (id: string) => tab.locator(`li.job[data-job-id="${id}"]`);
    expect(await cardOf(failed.id).locator('.job-error').innerText()).toBe('Scraper timed out');
    expect(await cardOf(failed.id).locator('button.cancel').count()).toBe(0);
    expect(await cardOf(running.id).locator('.meta').innerText()).toContain('competitor c1');
    await tab.screenshot({ path: path.join(artifacts, 'dashboard-list.png'), fullPage: true });

    // A worker reports: the progress bar moves without a reload.
    await t.app.jobs.updateProgress(workspaceId, running.id, { progress: 60, stepId: 'ingest', stepStatus: 'RUNNING' });
    await expect.poll(() => cardOf(running.id).getByRole('progressbar').getAttribute('aria-valuenow'), { timeout: 10_000 }).toBe('60');
    expect(await cardOf(running.id).locator('.steps').innerText()).toContain('Processing Intel: running');

    // Restart the gateway: the page shows it reconnecting, then resumes; a change made before it
    // is back comes through the replay from `after`.
    await t.close();
    await expect.poll(() => tab.locator('#connection').innerText(), { timeout: 10_000 }).toBe('Reconnecting…');
    t = await startTestApp({ database, env: { PORT: port } });
    await t.app.jobs.updateProgress(workspaceId, running.id, { progress: 80 });
    await expect.poll(() => cardOf(running.id).getByRole('progressbar').getAttribute('aria-valuenow'), { timeout: 45_000 }).toBe('80');
    expect(await tab.locator('#connection').innerText()).toBe('Live');
    const created = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'A new one', steps });
    await expect.poll(() => tab.locator('li.job h2').first().innerText(), { timeout: 10_000 }).toBe('A new one');

    // Cancel, from the keyboard: the job fails as cancelled, in the database and on the page.
    await cardOf(created.id).getByRole('button', { name: 'Cancel A new one' }).focus();
    await tab.keyboard.press('Enter');
    await expect.poll(async () => (await t.app.jobs.get(workspaceId, created.id))?.status, { timeout: 10_000 }).toBe('FAILED');
    await expect.poll(() => cardOf(created.id).getAttribute('data-status'), { timeout: 10_000 }).toBe('FAILED');
    expect(await cardOf(created.id).locator('.job-error').innerText()).toBe('Cancelled');

    // Filters: failed jobs only.
    await tab.getByLabel('Status').selectOption('FAILED');
    await expect
      .poll(async () => (await tab.locator('li.job').evaluateAll((cards) => cards.map((c) => (c as HTMLElement).dataset.status))).join())
      .toBe('FAILED,FAILED');
    await tab.setViewportSize({ width: 375, height: 812 });
    await tab.screenshot({ path: path.join(artifacts, 'dashboard-phone.png'), fullPage: true });
    expect(await tab.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);

    // A key that may not cancel gets no Cancel button.
    const reader = await t.createKey('dashboard', ['jobs:read']);
    await tab.getByRole('button', { name: 'Forget key' }).click();
    await tab.getByLabel('API key').fill(reader);
    await tab.getByRole('button', { name: 'Show jobs' }).click();
    await expect.poll(() => tab.locator('li.job').count(), { timeout: 10_000 }).toBe(3);
    expect(await tab.locator('button.cancel').count()).toBe(0);
    expect(pageErrors).toEqual([]);
    expect(await violations()).toEqual([]);
    await tab.close();
    await t.close();
    await database.drop();
  });

  it('loads older jobs on demand, a page at a time, until the oldest, and keeps following them live', { timeout: 60_000 }, async () => {
    const t = await startTestApp();
    try {
      const key = await t.createKey('history', ['jobs:read', 'jobs:write']);
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      // 250 jobs of history: the first page (100) and two more, the last one short. Written oldest
      // first, as they would have been: the newest change is the first page's, and the live view,
      // resuming from it, brings nothing older by itself.
      await t.app.database.sql.query(
        `INSERT INTO "Job" (id, "workspaceId", type, "displayTitle", "startedAt")
         SELECT gen_random_uuid(), $1::uuid, 'collect', 'Old ' || n, now() - n * interval '1 minute' FROM generate_series(250, 1, -1) AS n`,
        [workspaceId],
      );
      // Until the change feed has read the insert, the list's cursors are lower bounds, and the live
      // view, resuming from them, would bring every job of the insert (as changed since): wait for it.
      await expect
        .poll(async () => {
          const [newest] = await t.app.jobs.list(workspaceId, { limit: 1 });
          return t.app.jobs.cursorOf(newest!) === positionOf(newest!);
        })
        .toBe(true);
      const tab = await browser.newPage();
      await tab.goto(`${t.url}/`);
      await tab.getByLabel('API key').fill(key);
      await tab.getByLabel('API key').press('Enter');
      await expect.poll(() => tab.locator('#connection').innerText(), { timeout: 20_000 }).toBe('Live');
      const cards = tab.locator('li.job');
      const older = tab.getByRole('button', { name: 'Load older jobs' });
      await expect.poll(() => cards.count()).toBe(100);
      await older.click();
      await expect.poll(() => cards.count()).toBe(200);
      await older.click();
      await expect.poll(() => cards.count()).toBe(250);
      expect(await older.isHidden()).toBe(true);
      // Newest first, the oldest last; each job once.
      const titles = await tab.locator('li.job h2').allInnerTexts();
      expect(titles[0]).toBe('Old 1');
      expect(titles.at(-1)).toBe('Old 250');
      expect(new Set(titles).size).toBe(250);
      // A job of an older page is followed like the first page's.
      const [{ id: oldest }] = (await t.app.database.sql.query<{ id: string }>(`SELECT id FROM "Job" WHERE "displayTitle" = 'Old 250'`)) as [{ id: string }];
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: oldest, progress: 42 } }, key);
      await expect.poll(() => tab.locator(`li.job[data-job-id="${oldest}"] [role=progressbar]`).getAttribute('aria-valuenow'), { timeout: 10_000 }).toBe('42');
      await tab.close();
    } finally {
      await t.close();
    }
  });

  it(
    'opens from a link with an access token in its fragment: no key, only the jobs the token sees, the token gone from the address bar',
    { timeout: 60_000 },
    async () => {
      const t = await startTestApp();
      try {
        const key = await t.createKey('embed', ['jobs:read', 'jobs:write']);
        await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'Mine', competitorId: 'c1' }) }, key);
        await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'Not mine', competitorId: 'c2' }) }, key);
        const { createAccessToken } = await graphqlOk(t.url, CreateAccessTokenDocument, { input: { scopes: ['jobs:read'], competitorId: 'c1' } }, key);
        const tab = await browser.newPage();
        const urls: string[] = [];
        tab.on('request', (request) => urls.push(request.url()));
        await tab.goto(`${t.url}/#token=${createAccessToken.token}`);
        await expect.poll(() => tab.locator('#connection').innerText(), { timeout: 20_000 }).toBe('Live');
        await expect.poll(() => tab.locator('li.job h2').allInnerTexts()).toEqual(['Mine']);
        expect(tab.url()).toBe(`${t.url}/`);
        expect(urls.some((url) => url.includes(createAccessToken.token))).toBe(false);
        // A read-only token: no Cancel button.
        expect(await tab.getByRole('button', { name: /Cancel/ }).count()).toBe(0);
        await tab.close();
      } finally {
        await t.close();
      }
    },
  );

  it('shows a job whose worker died fail as it happens, with the reason it stalled', { timeout: 60_000 }, async () => {
    const t = await startTestApp({ env: { JOB_STALL_SWEEP_INTERVAL_MS: '200' } });
    try {
      const key = await t.createKey('stalls');
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const tab = await browser.newPage();
      await tab.goto(`${t.url}/`);
      await tab.getByLabel('API key').fill(key);
      await tab.getByLabel('API key').press('Enter');
      await expect.poll(() => tab.locator('#connection').innerText(), { timeout: 20_000 }).toBe('Live');
      // Created once the dashboard is live, by a worker that then sends nothing.
      const job = await t.app.jobs.create(workspaceId, {
        type: 'collect',
        displayTitle: 'Worker died',
        steps: [{ id: 'a', name: 'A' }],
        heartbeatTimeoutMs: 1_000,
      });
      const card = tab.locator(`li.job[data-job-id="${job.id}"]`);
      await expect.poll(() => card.getAttribute('data-status'), { timeout: 10_000 }).toBe('RUNNING');
      await expect.poll(() => card.getAttribute('data-status'), { timeout: 10_000 }).toBe('FAILED');
      expect(await card.locator('.job-error').innerText()).toBe('Stalled: no report for 1 s');
      await tab.close();
    } finally {
      await t.close();
    }
  });

  it(
    'the dashboard holds hostile data at 1,200 px and on a 390 px phone: no horizontal scroll, every status visible, values isolated, long errors on demand',
    { timeout: 60_000 },
    async () => {
      const t = await startTestApp();
      const key = await t.createKey('hostile');
      const workspaceId = await workspaceIdOf(t.app.apiKeys, key);
      const unbroken = (char: string) => char.repeat(500);
      await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: unbroken('W'), competitorId: 'c1', steps: [{ id: 's', name: unbroken('S') }] });
      // An unclosed right-to-left override in the type: it must not reverse the competitor or the time.
      await t.app.jobs.create(workspaceId, { type: '\u202Eevil', displayTitle: 'Override', competitorId: 'competitor-after', steps: [] });
      const failing = await t.app.jobs.create(workspaceId, { type: 'collect', displayTitle: 'Long error', steps: [] });
      const longError = `${'E'.repeat(5_000)} ${'x '.repeat(2_499)}`.slice(0, 10_000);
      await t.app.jobs.fail(workspaceId, failing.id, longError);

      for (const width of [1_200, 390]) {
        const tab = await browser.newPage({ viewport: { width, height: 800 } });
        const violations = await watchPolicy(tab);
        await tab.goto(`${t.url}/`);
        await tab.getByLabel('API key').fill(key);
        await tab.getByLabel('API key').press('Enter');
        await expect.poll(() => tab.locator('li.job').count(), { timeout: 20_000 }).toBe(3);
        const layout = await tab.evaluate(() => ({
          scrollWidth: document.documentElement.scrollWidth,
          innerWidth: window.innerWidth,
          statuses: [...document.querySelectorAll('.job .status')].map((status) => {
            const box = status.getBoundingClientRect();
            return { left: box.left, right: box.right, width: box.width };
          }),
        }));
        expect(layout.scrollWidth, `${width} px`).toBeLessThanOrEqual(layout.innerWidth);
        expect(layout.statuses).toHaveLength(3);
        for (const box of layout.statuses) {
          expect(box.width, `${width} px`).toBeGreaterThan(0);
          expect(box.left, `${width} px`).toBeGreaterThanOrEqual(0);
          expect(box.right, `${width} px`).toBeLessThanOrEqual(layout.innerWidth);
        }
        // Every value of a job sits in an isolate of its own: the override reaches no further.
        const override = tab.locator('li.job', { hasText: 'Override' });
        const typeIsolation = await override
          .locator('.meta bdi')
          .first()
          .evaluate((element) => [element.textContent, getComputedStyle(element).unicodeBidi]);
        expect(typeIsolation).toEqual(['\u202Eevil', 'isolate']);
        expect(await override.locator('.meta').innerText()).toContain('competitor competitor-after');
        // A 10,000-character error shows a few lines, and all of it on demand.
        const card = tab.locator(`li.job[data-job-id="${failing.id}"]`);
        const error = card.locator('.job-error');
        const lineHeight = await error.evaluate((element) => Number.parseFloat(getComputedStyle(element).lineHeight) || 20);
        expect((await error.boundingBox())!.height).toBeLessThanOrEqual(4 * lineHeight);
        await card.getByRole('button', { name: 'Show the whole error' }).click();
        expect((await error.boundingBox())!.height).toBeGreaterThan(10 * lineHeight);
        expect((await error.innerText()).replace(/\s+/g, ' ').trim()).toBe(longError.replace(/\s+/g, ' ').trim());
        expect(await card.getByRole('button', { name: 'Show less' }).getAttribute('aria-expanded')).toBe('true');
        await tab.screenshot({ path: path.join(artifacts, `dashboard-hostile-${width}.png`), fullPage: false });
        expect(await violations()).toEqual([]);
        await tab.close();
      }
    },
  );

  // The client reconnects with graphql-ws's randomised exponential backoff (1 s, 2 s, 4 s... plus up to
  // 3 s each): on a loaded machine a slow restart can cost it several rounds, hence the long waits.
  it(
    "the README's client snippet follows a token's jobs through a gateway restart and the token's expiry, ending on the database's state",
    { timeout: 120_000 },
    async () => {
      const database = await freshDatabase();
      let t = await startTestApp({ database });
      const port = new URL(t.url).port;
      try {
        const key = await t.createKey('client-page', ['jobs:read', 'jobs:write']);
        const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
        const snippet = [...readme.matchAll(/```js\n([\s\S]*?)```/g)]
          .map((m) => m[1]!)
          .find((block) => block.includes('jobs-gateway/client'))!
          .replace('http://127.0.0.1:4000', t.url);
        let minted = 0;
        // The app's backend: a token for competitor-1's jobs, living 10 s (the shortest) so that it expires during the test.
        const mint = async () => {
          minted++;
          const response = await fetch(`${t.url}/api/tokens`, {
            method: 'POST',
            headers: { 'x-api-key': key, 'content-type': 'application/json' },
            body: JSON.stringify({ scopes: ['jobs:read'], competitorId: 'competitor-1', ttlMs: 10_000 }),
          });
          return ((await response.json()) as { token: string }).token;
        };
        const app = await serveClientApp(snippet, mint);
        const tab = await browser.newPage();
        tab.on('pageerror', (error) => console.error('page error:', error));
        // The snippet's loop never ends (its module never finishes loading): wait for the page, not its load event.
        await tab.goto(app.url, { waitUntil: 'domcontentloaded' });
        const mine = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'competitor-1' }) }, key)).createJob;
        const other = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ competitorId: 'competitor-2' }) }, key)).createJob;
        const updates = () => tab.evaluate(() => (window as unknown as { updates: Array<{ id: string; progress: number; status: string }> }).updates);
        // Until the socket is up a change may pass unseen (the snippet starts from now): keep moving the job.
        let progress = 0;
        while (!(await updates()).some((u) => u.id === mine.id)) {
          expect(progress).toBeLessThan(100);
          await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: mine.id, progress: ++progress } }, key);
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
        // The gateway restarts; then the first token expires (10 s) while the job keeps moving.
        await t.close();
        t = await startTestApp({ database, env: { PORT: port } });
        for (let i = 0; i < 15; i++) {
          await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: mine.id, progress: ++progress } }, key);
          await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: other.id, progress } }, key);
          await new Promise((resolve) => setTimeout(resolve, 800));
        }
        await graphqlOk(t.url, CompleteJobDocument, { id: mine.id }, key);
        await expect.poll(async () => (await updates()).at(-1), { timeout: 30_000 }).toMatchObject({ id: mine.id, status: 'COMPLETED', progress: 100 });
        const seenStates = await updates();
        // Only the token's jobs, never backwards, and a fresh token after the first expired.
        expect(seenStates.every((u) => u.id === mine.id)).toBe(true);
        const progresses = seenStates.map((u) => u.progress);
        expect(progresses).toEqual([...progresses].sort((a, b) => a - b));
        expect(minted).toBeGreaterThanOrEqual(3);
        await tab.close();
        await app.close();
      } finally {
        await t.close();
        await database.drop();
      }
    },
  );

  it("the README's dashboard snippet receives updates and resumes after the gateway restarts", { timeout: 120_000 }, async () => {
    const database = await freshDatabase();
    let t = await startTestApp({ database });
    const port = new URL(t.url).port;
    const key = await t.createKey('browser');

    const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
    const snippet = [...readme.matchAll(/```js\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((block) => block.includes('graphql-ws'))!
      .replace('ws://127.0.0.1:4000', t.url.replace('http', 'ws'));
    const page = await serveDashboard(snippet, key);
    const tab = await browser.newPage();
    tab.on('pageerror', (error) => console.error('page error:', error));
    // The snippet reports a subscription error on the console: show it with the test's output.
    tab.on(
      'console',
      (message) => message.type() === 'error' && !message.text().startsWith('Failed to load resource') && console.error('page console:', message.text()),
    );
    await tab.goto(page.url);

    const job = (await graphqlOk(t.url, CreateJobDocument, { input: oneStepJob({ displayTitle: 'In the browser' }) }, key)).createJob;
    // Until the socket is up a change may be missed (no `after` yet), so keep moving the job.
    for (let progress = 1; !(await seen(tab, job.id)); progress++) {
      expect(progress).toBeLessThan(200);
      await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress } }, key);
      await tab.waitForFunction(() => (window as unknown as { updates: unknown[] }).updates.length > 0, undefined, { timeout: 250 }).catch(() => undefined);
    }

    // Restart: the page's client reconnects on its own and resumes from the largest changeCursor.
    await t.close();
    t = await startTestApp({ database, env: { PORT: port } });
    // Written before the page has reconnected (its backoff is a second or more): only the replay
    // from `after` can bring it.
    await graphqlOk(t.url, UpdateJobProgressDocument, { input: { id: job.id, progress: 99 } }, key);
    await tab
      .waitForFunction(
        (id) => (window as unknown as { updates: Array<{ id: string; progress: number }> }).updates.some((u) => u.id === id && u.progress === 99),
        job.id,
        { timeout: 45_000 },
      )
      .catch(async (error: unknown) => {
        const updates = await tab.evaluate(() => (window as unknown as { updates: unknown[] }).updates);
        throw new Error(`${String(error)}\nreceived: ${JSON.stringify(updates)}\nsockets on the restarted gateway: ${t.app.webSockets.connectionCount}`);
      });
    await graphqlOk(t.url, CompleteJobDocument, { id: job.id }, key);
    await tab.waitForFunction(
      (id) => (window as unknown as { updates: Array<{ id: string; status: string }> }).updates.some((u) => u.id === id && u.status === 'COMPLETED'),
      job.id,
      { timeout: 20_000 },
    );
    const updates = await tab.evaluate(
      () => (window as unknown as { updates: Array<{ id: string; progress: number; changeCursor: string; status: string }> }).updates,
    );
    const cursors = updates.map((u) => BigInt(u.changeCursor));
    expect(new Set(cursors).size).toBe(cursors.length);
    expect(cursors).toEqual([...cursors].sort((a, b) => (a < b ? -1 : 1)));
    // The change made while the page was disconnected came through the replay.
    expect(updates.some((u) => u.progress === 99 && u.status === 'RUNNING')).toBe(true);
    expect(updates.at(-1)).toMatchObject({ id: job.id, status: 'COMPLETED', progress: 100 });

    await tab.close();
    await page.close();
    await t.close();
    await database.drop();
  });
});

/**
 * A page of the README's client snippet, served as a web app would serve it: the published client
 * (dist/client, its two imports mapped), and a backend route that mints a token per page load with
 * the app's key, as the README's curl does.
 */
async function serveClientApp(snippet: string, mint: () => Promise<string>): Promise<{ url: string; close(): Promise<void> }> {
  const vendors: Record<string, string> = {
    '/vendor/client/': path.join(repoRoot, 'dist/client'),
    '/vendor/graphql-ws/': path.join(repoRoot, 'node_modules/graphql-ws/dist'),
    '/vendor/repeater/': path.join(repoRoot, 'node_modules/@repeaterjs/repeater/src'),
  };
  const imports = {
    'jobs-gateway/client': '/vendor/client/client.js',
    'graphql-ws': '/vendor/graphql-ws/client.js',
    '@repeaterjs/repeater': '/vendor/repeater/index.js',
  };
  const html = `<!doctype html><html><body><ul id="jobs"></ul>
<script type="importmap">${JSON.stringify({ imports })}</script>
<script type="module">
window.updates = [];
const render = (job) => window.updates.push(job);
${snippet}
</script></body></html>`;
  const serve = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.url === '/') return res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    if (req.url === '/jobs-token') return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: await mint() }));
    const vendor = Object.keys(vendors).find((prefix) => req.url?.startsWith(prefix));
    if (!vendor) return res.writeHead(404).end();
    // Subfolders too (the repeater's chunks), never above the package's folder.
    const wanted = path.join(vendors[vendor]!, path.normalize(req.url!.slice(vendor.length)));
    const file = wanted.startsWith(vendors[vendor]! + path.sep) ? await fs.readFile(wanted).catch(() => undefined) : undefined;
    if (!file) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(file);
  };
  const server = http.createServer((req, res) => void serve(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function seen(tab: import('playwright-core').Page, id: string): Promise<boolean> {
  return tab.evaluate((jobId) => (window as unknown as { updates: Array<{ id: string }> }).updates.some((u) => u.id === jobId), id);
}

/** A page like a customer's dashboard: the README snippet, with graphql-ws from an import map. */
async function serveDashboard(snippet: string, key: string): Promise<{ url: string; close(): Promise<void> }> {
  const vendor = path.join(repoRoot, 'node_modules/graphql-ws/dist');
  const html = `<!doctype html><html><body><ul id="jobs"></ul>
<script type="importmap">{"imports":{"graphql-ws":"/vendor/client.js"}}</script>
<script type="module">
window.updates = [];
const KEY = ${JSON.stringify(key)};
const render = (job) => {
  window.updates.push(job);
  document.getElementById('jobs').textContent = JSON.stringify(window.updates);
};
${snippet}
</script></body></html>`;
  const serve = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.url === '/') return res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    const file = req.url?.startsWith('/vendor/') ? path.join(vendor, path.basename(req.url)) : undefined;
    if (!file) return res.writeHead(404).end();
    try {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(await fs.readFile(file));
    } catch {
      res.writeHead(404).end();
    }
  };
  const server = http.createServer((req, res) => void serve(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
