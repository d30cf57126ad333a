import { GraphQLError, parse } from 'graphql';
import { expect, it } from 'vitest';
import { schema } from '../../../src/graphql/schema.js';
import { planJobUpdated } from '../../../src/ws/jobupdated-plan.js';

const plan = (source: string, variables?: Record<string, unknown>, operationName?: string) => planJobUpdated(schema, parse(source), operationName, variables);

it('takes a subscription whose only root field is jobUpdated, with its arguments coerced as graphql-js would', () => {
  const planned = plan('subscription W($s: JobStatus, $a: String) { jobUpdated(status: $s, competitorId: 7, after: $a) { id } }', { s: 'RUNNING', a: '42' });
  expect(planned?.args).toMatchObject({ status: 'RUNNING', competitorId: '7', after: '42' });
  // `after` is each subscriber's own: the variable that carries it does not decide what is sent.
  expect(planned?.sharedVariables).toEqual({ s: 'RUNNING' });
});

it('keeps `after` shared when its variable also sets something else', () => {
  const planned = plan('subscription W($a: String) { jobUpdated(type: $a, after: $a) { id } }', { a: 'x' });
  expect(planned?.sharedVariables).toEqual({ a: 'x' });
});

it('leaves everything else to run the usual way', () => {
  expect(plan('query { jobs { id } }')).toBeUndefined();
  expect(plan('subscription { jobUpdated { id } other: jobUpdated(id: "1") { id } }')).toBeUndefined();
  expect(plan('subscription { jobUpdated @include(if: true) { id } }')).toBeUndefined();
  expect(plan('subscription { ...F } fragment F on Subscription { jobUpdated { id } }')).toBeUndefined();
  expect(plan('subscription A { jobUpdated { id } } query B { jobs { id } }', {}, 'B')).toBeUndefined();
});

it('refuses variables and arguments that do not coerce with BAD_USER_INPUT', () => {
  for (const [source, variables] of [
    ['subscription W($s: JobStatus) { jobUpdated(status: $s) { id } }', { s: 'SLEEPING' }],
    ['subscription W($s: JobStatus!) { jobUpdated(status: $s) { id } }', {}],
  ] as const) {
    let thrown: unknown;
    try {
      plan(source, variables);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(GraphQLError);
    expect((thrown as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
  }
});
