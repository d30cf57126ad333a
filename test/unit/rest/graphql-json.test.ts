import { buildSchema, parse } from 'graphql';
import { expect, it } from 'vitest';
import { fragmentJsonSchema, restValues } from '../../../src/rest/graphql-json.js';

const schema = buildSchema(`
  scalar DateTime
  scalar JSON
  enum Status { RUNNING DONE }
  type Step { key: String!, status: Status! }
  type Job { id: ID!, status: Status!, note: String, steps: [Step!]!, startedAt: DateTime!, at: DateTime, metadata: JSON! }
  type Query { jobs: [Job!]!, job: Job }
`);

it("describes a fragment's fields from their GraphQL types: nullability, enums as the REST routes write them, nested objects by name", () => {
  const [fragment] = parse('fragment J on Job { id status note steps { id: key status } startedAt at metadata }').definitions;
  expect(fragmentJsonSchema(schema, fragment as never, 'Job')).toEqual({
    Job: {
      type: 'object',
      required: ['id', 'status', 'note', 'steps', 'startedAt', 'at', 'metadata'],
      additionalProperties: false,
      properties: {
        id: { type: 'string' },
        status: { type: 'string', enum: ['running', 'done'] },
        note: { type: ['string', 'null'] },
        steps: { type: 'array', items: { $ref: '#/components/schemas/Step' } },
        startedAt: { type: 'string', format: 'date-time' },
        at: { type: ['string', 'null'], format: 'date-time' },
        metadata: {},
      },
    },
    Step: {
      type: 'object',
      required: ['id', 'status'],
      additionalProperties: false,
      properties: { id: { type: 'string' }, status: { type: 'string', enum: ['running', 'done'] } },
    },
  });
});

it('writes enum values lowercase along the selections, through fragments, aliases and lists, and nothing else', () => {
  const document = parse('query { jobs { ...J } job { s: status } } fragment J on Job { status note steps { key status } metadata }');
  const data = {
    jobs: [{ status: 'RUNNING', note: 'KEEP', steps: [{ key: 'A', status: 'DONE' }], metadata: { status: 'RUNNING' } }],
    job: null,
  };
  expect(restValues(schema, document)(data)).toEqual({
    jobs: [{ status: 'running', note: 'KEEP', steps: [{ key: 'A', status: 'done' }], metadata: { status: 'RUNNING' } }],
    job: null,
  });
  expect(restValues(schema, parse('query { job { s: status } }'))({ job: { s: 'DONE' } })).toEqual({ job: { s: 'done' } });
});
