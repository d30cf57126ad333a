// The live dashboard served at `/`: a key pasted once, or an access token from the link's fragment
// (kept in sessionStorage, never in the URL), the workspace's jobs a page at a time, then every
// change, followed by the client library (jobs-gateway/client: reconnects, resumes with `after`).
// Plain DOM, bundled at install (no build step at run time).
import { type JobFilter, JobsClient } from '../client/client.js';
import { JOB_FILTER_NAMES, type JobFilterValues, jobMatches } from '../jobs/job-filter.js';
import { LIST_DOCUMENT, PAGE_SIZE } from './documents.js';
import { DashboardCancelDocument, type DashboardJobFragment } from './operations.generated.js';
import './app.css';

type Job = DashboardJobFragment;

const KEY_STORAGE = 'jobs-gateway:key';

interface JobPage {
  edges: Array<{ node: Job }>;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

const jobs = new Map<string, Job>();
let scopes: string[] = [];
let client: JobsClient | undefined;
/** Stops the live view of the list shown (filters changed, or signed out). */
let watching: AbortController | undefined;
/** Loads started so far: a load that another started after it drops its result. */
let loads = 0;
/** The filters of the list shown, and where its next older page starts (null once the oldest job is shown). */
let shown: JobFilterValues = {};
let olderCursor: string | null = null;

function setConnection(state: 'connecting' | 'live' | 'reconnecting' | 'signed-out', detail = ''): void {
  const element = $('#connection');
  element.dataset.state = state;
  element.textContent =
    { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', 'signed-out': 'Not connected' }[state] + (detail ? ` ${detail}` : '');
}

function showError(message: string): void {
  const element = $('#error');
  element.textContent = message;
  element.hidden = message === '';
}

async function graphql<T>(query: string, vars: Record<string, unknown>): Promise<T> {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': sessionStorage.getItem(KEY_STORAGE) ?? '' },
    body: JSON.stringify({ query, variables: vars }),
  });
  const body = (await response.json()) as { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  if (body.errors?.length) throw Object.assign(new Error(body.errors[0]!.message), { code: body.errors[0]!.extensions?.code });
  return body.data!;
}

/** The filters the form sets; an empty field is no filter. */
function filters(): JobFilterValues {
  const values: Record<string, string | null> = {};
  for (const name of JOB_FILTER_NAMES) values[name] = $<HTMLInputElement | HTMLSelectElement>(`#filter-${name}`).value.trim() || null;
  return values;
}

const isNewer = (cursor: string, than: string | null) => than === null || BigInt(cursor) > BigInt(than);

/** Loads the list for the current filters, then follows it live from the newest cursor in it. */
async function load(): Promise<void> {
  const f = filters();
  const load = ++loads;
  watching?.abort();
  showError('');
  let data: { viewer: { scopes: string[] }; jobsConnection: JobPage };
  try {
    data = await graphql(LIST_DOCUMENT, { ...f, after: null });
  } catch (error) {
    if (load !== loads) return;
    if ((error as { code?: string }).code === 'UNAUTHENTICATED') return signOut('That key is not valid (or was revoked).');
    showError(`Could not load the jobs: ${(error as Error).message}`);
    return;
  }
  // Filters changed while this list was on its way: the newer load shows and follows its own.
  if (load !== loads) return;
  shown = f;
  scopes = data.viewer.scopes;
  jobs.clear();
  let after: string | null = null;
  for (const { node: job } of data.jobsConnection.edges) {
    jobs.set(job.id, job);
    if (isNewer(job.changeCursor, after)) after = job.changeCursor;
  }
  const { hasNextPage, endCursor } = data.jobsConnection.pageInfo;
  setOlder(hasNextPage ? endCursor : null);
  render();
  watching = new AbortController();
  void follow(f, after, watching.signal);
}

/** The filters as the client takes them: those set. */
function definedFilters(f: JobFilterValues): JobFilter {
  return Object.fromEntries(Object.entries(f).filter(([, value]) => value != null));
}

/** Every change of the jobs the filters match, from the newest cursor of the list: the client resumes it across reconnects. */
async function follow(f: JobFilterValues, after: string | null, signal: AbortSignal): Promise<void> {
  try {
    for await (const job of client!.watchJobs(definedFilters(f), { ...(after !== null && { after }), signal })) {
      // A job that left the filters (a RUNNING filter and a job that finished) leaves the list.
      if (!jobMatches(job, f)) {
        jobs.delete(job.id);
        render();
        continue;
      }
      const known = jobs.has(job.id);
      jobs.set(job.id, job);
      if (known) replaceCard(job);
      else render();
    }
  } catch (error) {
    if (!signal.aborted) showError(`The live updates stopped: ${error instanceof Error ? error.message : 'the connection was refused'}`);
  }
}

function setOlder(nextCursor: string | null): void {
  olderCursor = nextCursor;
  $('#load-older').hidden = olderCursor === null;
}

/**
 * The next older page, for the filters of the list shown. Its jobs are already followed: the
 * subscription watches the filters, not the jobs listed. A job the live view brought meanwhile
 * stays as it is (its state is newer than the page's).
 */
async function loadOlder(): Promise<void> {
  if (olderCursor === null) return;
  const load = loads;
  const button = $<HTMLButtonElement>('#load-older');
  button.disabled = true;
  try {
    const page = await client!.listPage(definedFilters(shown), { first: PAGE_SIZE, after: olderCursor });
    if (load !== loads) return;
    for (const job of page.jobs) if (!jobs.has(job.id)) jobs.set(job.id, job);
    setOlder(page.nextCursor);
    render();
  } catch (error) {
    showError(`Could not load older jobs: ${(error as Error).message}`);
  } finally {
    button.disabled = false;
  }
}

function connect(): void {
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (!key) return signOut();
  $('#sign-in').hidden = true;
  $('#board').hidden = false;
  setConnection('connecting');
  client = new JobsClient({
    url: location.origin,
    // Read at every connect and request: what the tab holds now.
    credential: () => sessionStorage.getItem(KEY_STORAGE) ?? '',
    on: {
      connected: () => setConnection('live'),
      closed: (code) => {
        // Refused (4401), or refused at connect or expired (4403): a page cannot get another credential itself.
        if (code === 4403 || code === 4401) return signOut('That key or token is not valid (or was revoked, or expired).');
        setConnection('reconnecting');
      },
    },
  });
  void load();
}

function signOut(message = ''): void {
  watching?.abort();
  void client?.close();
  client = undefined;
  sessionStorage.removeItem(KEY_STORAGE);
  jobs.clear();
  $<HTMLFormElement>('#filters').reset();
  $('#board').hidden = true;
  $('#sign-in').hidden = false;
  setConnection('signed-out');
  showError(message);
  $<HTMLInputElement>('#key').focus();
}

async function cancel(id: string, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    await graphql(DashboardCancelDocument.toString(), { id });
  } catch (error) {
    showError(`Could not cancel: ${(error as Error).message}`);
    button.disabled = false;
  }
}

const time = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : '');

/**
 * A value of the job's, isolated from the text around it: a right-to-left override in a `type`
 * (U+202E) would otherwise reverse the rest of its line, competitor and start time included.
 */
function isolated(text: string): HTMLElement {
  const element = document.createElement('bdi');
  element.textContent = text;
  return element;
}

/** Errors longer than this many characters show their first lines, and the rest on demand. */
const LONG_ERROR = 240;

function card(job: Job): HTMLElement {
  const item = document.createElement('li');
  item.className = 'job';
  item.dataset.jobId = job.id;
  item.dataset.status = job.status;
  const title = document.createElement('h2');
  title.append(isolated(job.displayTitle));
  const meta = document.createElement('p');
  meta.className = 'meta';
  const parts: Array<Array<string | HTMLElement>> = [[isolated(job.type)]];
  if (job.competitorId) parts.push(['competitor ', isolated(job.competitorId)]);
  parts.push([`started ${time(job.startedAt)}`]);
  if (job.completedAt) parts.push([`ended ${time(job.completedAt)}`]);
  parts.forEach((part, i) => meta.append(...(i > 0 ? [' · '] : []), ...part));
  const status = document.createElement('span');
  status.className = `status status-${job.status.toLowerCase()}`;
  status.textContent = job.status.toLowerCase();
  const progress = document.createElement('div');
  progress.className = 'progress';
  progress.setAttribute('role', 'progressbar');
  progress.setAttribute('aria-label', `Progress of ${job.displayTitle}`);
  progress.setAttribute('aria-valuemin', '0');
  progress.setAttribute('aria-valuemax', '100');
  progress.setAttribute('aria-valuenow', String(job.progress));
  const bar = document.createElement('div');
  bar.className = 'bar';
  bar.style.width = `${job.progress}%`;
  progress.append(bar);
  const percent = document.createElement('span');
  percent.className = 'percent';
  percent.append(`${job.progress}%`, ...(job.currentStep ? [' · ', isolated(job.currentStep)] : []));
  const steps = document.createElement('ol');
  steps.className = 'steps';
  for (const step of job.steps) {
    const li = document.createElement('li');
    li.dataset.status = step.status;
    li.append(isolated(step.name), `: ${step.status.toLowerCase()}`);
    steps.append(li);
  }
  const header = document.createElement('div');
  header.className = 'head';
  header.append(title, status);
  item.append(header, meta, progress, percent, steps);
  if (job.status === 'FAILED' && job.error) {
    const error = document.createElement('p');
    error.className = 'job-error';
    error.append(isolated(job.error));
    item.append(error);
    if (job.error.length > LONG_ERROR) {
      // The first lines (CSS clamps them), and the whole error for whoever asks.
      error.dataset.clamped = 'true';
      const more = document.createElement('button');
      more.type = 'button';
      more.className = 'secondary more';
      more.textContent = 'Show the whole error';
      more.setAttribute('aria-expanded', 'false');
      more.addEventListener('click', () => {
        const open = error.dataset.clamped === 'true';
        error.dataset.clamped = String(!open);
        more.setAttribute('aria-expanded', String(open));
        more.textContent = open ? 'Show less' : 'Show the whole error';
      });
      item.append(more);
    }
  }
  if (job.status === 'RUNNING' && scopes.includes('jobs:cancel')) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'cancel';
    button.textContent = 'Cancel';
    button.setAttribute('aria-label', `Cancel ${job.displayTitle}`);
    button.addEventListener('click', () => void cancel(job.id, button));
    item.append(button);
  }
  return item;
}

/** Redraws one job in place, keeping the keyboard focus where it was (on its Cancel button, say). */
function replaceCard(job: Job): void {
  const old = document.querySelector<HTMLElement>(`li.job[data-job-id="${job.id}"]`);
  if (!old) return render();
  const focused = old.contains(document.activeElement) ? (document.activeElement as HTMLElement).className : undefined;
  const fresh = card(job);
  old.replaceWith(fresh);
  if (focused) (fresh.querySelector<HTMLElement>(`.${focused}`) ?? fresh.querySelector('h2'))?.focus();
}

function render(): void {
  const list = $('#jobs');
  const sorted = [...jobs.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt) || b.id.localeCompare(a.id));
  list.replaceChildren(...sorted.map(card));
  $('#empty').hidden = sorted.length > 0;
  $('#count').textContent = `${sorted.length} job${sorted.length === 1 ? '' : 's'}`;
}

$('#sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>('#key');
  const key = input.value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  input.value = '';
  connect();
});
$('#sign-out').addEventListener('click', () => signOut());
$('#load-older').addEventListener('click', () => void loadOlder());
$('#filters').addEventListener('submit', (event) => {
  event.preventDefault();
  void load();
});
// A choice from a list (the status) applies at once; typed filters apply on submit.
for (const select of document.querySelectorAll<HTMLSelectElement>('#filters select')) select.addEventListener('change', () => void load());
/**
 * A link or an embed may carry an access token in the fragment (`/#token=...`), which browsers never
 * send to a server: it is kept like a pasted key, for this tab, and taken out of the address bar so
 * that it is neither bookmarked nor shared with the link.
 */
function takeTokenFromUrl(): void {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (!token) return;
  sessionStorage.setItem(KEY_STORAGE, token);
  history.replaceState(null, '', location.pathname + location.search);
}

takeTokenFromUrl();
connect();
