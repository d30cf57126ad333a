import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { useServer } from 'graphql-ws/use/ws';
import { createPubSub, createSchema, createYoga } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { serveParent } from './ipc.js';

// The usual setup this gateway is compared with: graphql-yoga + graphql-ws (yoga's documented
// recipe) with createPubSub, where every event runs one execution per subscriber. Same schema
// shape, same selection, same payload; jobs in memory (no database), so it is measured at its best.

interface Step {
  id: string;
  name: string;
  status: string;
}
interface Job {
  id: string;
  workspaceId: string;
  competitorId: string | null;
  type: string;
  displayTitle: string;
  status: string;
  progress: number;
  currentStep: string | null;
  steps: Step[];
  startedAt: string;
  completedAt: string | null;
  metadata: Record<string, unknown>;
  error: string | null;
  updatedAt: string;
  changeCursor: string;
}

const jobs = new Map<string, Job>();
let cursor = 0;
const pubSub = createPubSub<{ jobUpdated: [Job] }>();

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    scalar JSON
    enum JobStatus {
      RUNNING
      COMPLETED
      FAILED
    }
    enum JobStepStatus {
      PENDING
      RUNNING
      COMPLETED
      FAILED
    }
    type JobStep {
      id: String!
      name: String!
      status: JobStepStatus!
    }
    type Job {
      id: ID!
      workspaceId: ID!
      competitorId: ID
      type: String!
      displayTitle: String!
      status: JobStatus!
      progress: Int!
      currentStep: String
      steps: [JobStep!]!
      startedAt: String!
      completedAt: String
      metadata: JSON!
      error: String
      updatedAt: String!
      changeCursor: String!
    }
    input JobStepInput {
      id: String!
      name: String!
    }
    input CreateJobInput {
      type: String!
      displayTitle: String!
      competitorId: ID
      steps: [JobStepInput!]!
      metadata: JSON
    }
    input UpdateJobProgressInput {
      id: ID!
      progress: Int
      stepId: String
      stepStatus: JobStepStatus
      metadata: JSON
    }
    type Query {
      job(id: ID!): Job
    }
    type Mutation {
      createJob(input: CreateJobInput!): Job!
      updateJobProgress(input: UpdateJobProgressInput!): Job!
    }
    type Subscription {
      jobUpdated(id: ID, status: JobStatus, after: String): Job!
    }
  `,
  resolvers: {
    Query: { job: (_: unknown, { id }: { id: string }) => jobs.get(id) ?? null },
    Mutation: {
      createJob: (
        _: unknown,
        { input }: { input: { type: string; displayTitle: string; competitorId?: string; steps: Array<{ id: string; name: string }> } },
      ) => {
        const now = new Date().toISOString();
        const job: Job = {
          id: randomUUID(),
          workspaceId: 'bench',
          competitorId: input.competitorId ?? null,
          type: input.type,
          displayTitle: input.displayTitle,
          status: 'RUNNING',
          progress: 0,
          currentStep: input.steps[0]?.name ?? null,
          steps: input.steps.map((s, i) => ({ ...s, status: i === 0 ? 'RUNNING' : 'PENDING' })),
          startedAt: now,
          completedAt: null,
          metadata: {},
          error: null,
          updatedAt: now,
          changeCursor: String(++cursor),
        };
        jobs.set(job.id, job);
        pubSub.publish('jobUpdated', job);
        return job;
      },
      updateJobProgress: (_: unknown, { input }: { input: { id: string; progress?: number; metadata?: Record<string, unknown> } }) => {
        const job = jobs.get(input.id);
        if (!job) throw new Error('not found');
        const next: Job = {
          ...job,
          progress: input.progress ?? job.progress,
          metadata: { ...job.metadata, ...input.metadata },
          updatedAt: new Date().toISOString(),
          changeCursor: String(++cursor),
        };
        jobs.set(job.id, next);
        pubSub.publish('jobUpdated', next);
        return next;
      },
    },
    Subscription: {
      jobUpdated: { subscribe: () => pubSub.subscribe('jobUpdated'), resolve: (job: Job) => job },
    },
  },
});

const yoga = createYoga({ schema, logging: false, graphiql: false });
// eslint-disable-next-line @typescript-eslint/no-misused-promises -- yoga's documented Node idiom; it answers its own errors
const server = createServer(yoga);
const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint, perMessageDeflate: false, backlog: 4096 });
type EnvelopedExecute = (args: unknown) => unknown;
useServer(
  {
    execute: (args) => (args.rootValue as { execute: EnvelopedExecute }).execute(args) as never,
    subscribe: (args) => (args.rootValue as { subscribe: EnvelopedExecute }).subscribe(args) as never,
    onSubscribe: async (ctx, _id, params) => {
      const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
        ...ctx,
        req: ctx.extra.request,
        socket: ctx.extra.socket,
        params,
      });
      const args = {
        schema,
        operationName: params.operationName,
        document: parse(params.query),
        variableValues: params.variables,
        contextValue: await contextFactory(),
        rootValue: { execute, subscribe },
      };
      const errors = validate(args.schema, args.document);
      if (errors.length) return errors;
      return args;
    },
  },
  wss,
);
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

serveParent(
  {
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    memory: () => {
      globalThis.gc?.();
      const { rss, heapUsed } = process.memoryUsage();
      return { rss, heapUsed };
    },
  },
  () => new Promise<void>((resolve) => server.close(() => resolve())),
);
