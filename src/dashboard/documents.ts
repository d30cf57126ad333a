import { FILTER_ARGUMENTS, FILTER_VARIABLES } from '../jobs/job-filter.js';
import { DashboardJobFragmentDoc } from './operations.generated.js';

/** Jobs a page of the dashboard's list holds. */
export const PAGE_SIZE = 100;

/**
 * The dashboard's list: the newest jobs a page at a time (older pages from the last page's
 * endCursor), with every filter the gateway declares (src/jobs/job-filter.ts). Composed here, apart
 * from the page's code, so that `npm run codegen` lists it among the gateway's trusted documents.
 */
export const LIST_DOCUMENT = `query Dashboard(${FILTER_VARIABLES}, $after: String) {
  viewer { scopes }
  jobsConnection(${FILTER_ARGUMENTS}, first: ${PAGE_SIZE}, after: $after) {
    edges { node { ...DashboardJob } }
    pageInfo { hasNextPage endCursor }
  }
}
${DashboardJobFragmentDoc.toString()}`;
