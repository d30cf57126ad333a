import { type GraphQLSchema, execute } from 'graphql';
import { RestJobStateDocument } from '../graphql/operations.generated.js';
import type { GatewayContext } from '../graphql/context.js';
import type { JobRow } from '../jobs/model.js';
import { restValues } from './graphql-json.js';

/** A job state in the REST routes' shape (GET /api/jobs/{id}'s body). */
export type RestJobRenderer = (job: JobRow) => Promise<Record<string, unknown>>;

/**
 * The REST shape of a job state that is already read, for whoever sends jobs outside a request (a
 * webhook's event): the REST routes' own fragment (RestJob) executed against the state, so the
 * shape is defined once, by the fragment, for the routes and for every other use.
 */
export function restJobRenderer(schema: GraphQLSchema, contextFor: (workspaceId: string) => GatewayContext): RestJobRenderer {
  const toRest = restValues(schema, RestJobStateDocument);
  return async (job) => {
    const result = await execute({ schema, document: RestJobStateDocument, rootValue: job, contextValue: contextFor(job.workspaceId) });
    if (result.errors?.length || !result.data) throw result.errors?.[0] ?? new Error('The REST job shape came out empty.');
    return (toRest(result.data) as { jobUpdated: Record<string, unknown> }).jobUpdated;
  };
}
