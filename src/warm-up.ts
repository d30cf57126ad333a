import { randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { SCOPES, type Principal } from './auth/scopes.js';
import type { GatewayYoga } from './graphql/yoga.js';
import type { RestResponse } from './rest/rest-handler.js';

type HandleRest = (method: string, url: URL, principal: Principal | null) => Promise<RestResponse>;

const ORIGIN = 'http://warm-up.invalid';
const CONCURRENCY = 8;

/**
 * Runs the busiest paths (a job and a page of jobs over REST and GraphQL, a progress report) `rounds`
 * times before the instance calls itself ready. Measured on a fresh process under the mixed load,
 * the first 2 s took 2-3 times the CPU of the steady state (V8 not yet optimized, the pool not yet
 * open, Prisma's query plans not yet compiled) and answered in 0.8-1.1 s at p99, where a process
 * warmed by the same load answered in 0.1 s. This warm-up recovers part of that (RESULTS.md): its
 * jobs are never found and its report is refused before the write, so those paths stay cold.
 *
 * Nothing is written and no tenant is touched: the principal belongs to a workspace that does not
 * exist (a fresh random id), so reads find nothing and the report answers NOT_FOUND. It stops early
 * when the instance starts shutting down.
 */
export async function warmUp(rest: HandleRest, yoga: GatewayYoga, rounds: number, stopping: () => boolean): Promise<void> {
  const principal: Principal = { keyId: 'warm-up', workspaceId: randomUUID(), scopes: new Set(SCOPES) };
  const graphql = async (query: string, variables: Record<string, unknown>) => {
    const response = await yoga.fetch(
      `${ORIGIN}/graphql`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) },
      { principal },
    );
    await response.arrayBuffer();
  };
  let round = 0;
  const once = async () => {
    const id = randomUUID();
    await rest('GET', new URL(`${ORIGIN}/api/jobs/${id}`), principal);
    // A page size of its own per round: the response cache would answer the same page from memory.
    await rest('GET', new URL(`${ORIGIN}/api/jobs?limit=${1 + (round++ % 200)}`), principal);
    await graphql('query($id: ID!) { job(id: $id) { id status progress currentStep steps { id name status } updatedAt } }', { id });
    await graphql('mutation($input: UpdateJobProgressInput!) { updateJobProgress(input: $input) { id updatedAt } }', { input: { id, progress: 1 } });
  };
  for (let done = 0; done < rounds && !stopping(); done += CONCURRENCY) {
    // allSettled: one failed round must not leave the others querying after the warm-up has ended.
    const results = await Promise.allSettled(Array.from({ length: Math.min(CONCURRENCY, rounds - done) }, once));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    // The embedded database answers on this thread without a turn of the event loop in between:
    // without this, requests (even /healthz) waited for the whole warm-up.
    await nextTurn();
  }
}
