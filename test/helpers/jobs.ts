import type { CreateJobInput } from '../../src/graphql/operations.generated.js';

/**
 * What tests create jobs from. A test that asserts a job's content starts from one of these and
 * states its differences as overrides, so that the content it expects is written next to them.
 */

/** The reference's competitor analysis, as its workers create it: four steps and some metadata. */
export const competitorAnalysis = (overrides: Partial<CreateJobInput> = {}): CreateJobInput => ({
  type: 'collect',
  displayTitle: 'Analyzing Competitor',
  competitorId: 'competitor-id',
  steps: [
    { id: 'collect', name: 'Collecting Intel' },
    { id: 'ingest', name: 'Processing Intel' },
    { id: 'build-matrix', name: 'Building Competitor Matrix' },
    { id: 'build-battlecard', name: 'Generating Battle Card' },
  ],
  metadata: { competitorName: 'Competitor Inc', isFirstRun: true, productIds: ['product-id-1'] },
  ...overrides,
});

/** The smallest job there is, one step named A: for tests about anything but a job's content. */
export const oneStepJob = (overrides: Partial<CreateJobInput> = {}): CreateJobInput => ({
  type: 'collect',
  displayTitle: 'A job',
  steps: [{ id: 'a', name: 'A' }],
  ...overrides,
});
