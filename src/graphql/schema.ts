import { builder } from './builder.js';
import './types/job.js';
import './types/job-mutations.js';
import './types/job-subscription.js';
import './types/viewer.js';
import './types/access-token.js';
import './types/webhooks.js';

/** The whole schema. Importing it has no side effects beyond building types (codegen imports it). */
export const schema = builder.toSchema({ sortSchema: false });
