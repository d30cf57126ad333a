import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generate } from '@graphql-codegen/cli';
import fc from 'fast-check';
import { type GraphQLError, parse, printSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { Principal } from '../../../src/auth/scopes.js';
import { PersistedDocuments } from '../../../src/graphql/persisted-documents.js';
import { PERSISTED_QUERIES } from '../../../src/limits/fixed.js';
import { createApp } from '../../../src/app.js';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { schema } from '../../../src/graphql/schema.js';
import { PROJECT_MANIFEST, TrustedDocuments, manifestOf } from '../../../src/graphql/trusted-documents.js';
import { createLogger } from '../../../src/logger.js';
import { repoRoot } from '../../helpers/paths.js';

it('writes the manifest graphql-codegen’s client preset writes for the same documents, hashed with sha256 as APQ clients hash', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'client-preset-'));
  try {
    const documents = ['src/rest/operations.graphql', 'src/sdk/operations.graphql'].map((file) => path.join(repoRoot, file));
    await generate(
      {
        schema: printSchema(schema),
        documents,
        generates: { [`${dir}/gql/`]: { preset: 'client', presetConfig: { persistedDocuments: { hashAlgorithm: 'sha256' }, fragmentMasking: false } } },
        silent: true,
      },
      true,
    );
    const preset = JSON.parse(await readFile(path.join(dir, 'gql', 'persisted-documents.json'), 'utf8')) as Record<string, string>;
    const ours = manifestOf(await Promise.all(documents.map(async (file) => parse(await readFile(file, 'utf8')))));
    expect(Object.keys(preset).length).toBeGreaterThan(5);
    expect(ours).toEqual(preset);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('lists a document whatever its spacing, comments and field order; not one with a field more or less', () => {
  const trusted = new TrustedDocuments([manifestOf([parse('query A($id: ID!) { job(id: $id) { id status steps { key name } } }')])]);
  expect(trusted.lists(parse('# a comment\nquery A($id: ID!) {\n  job(id: $id) { steps { name key } status id }\n}'))).toBe(true);
  fc.assert(
    fc.property(fc.subarray(['id', 'status', 'progress', 'steps { key name }', 'steps { key }'], { minLength: 1 }), (fields) => {
      const listed = [...fields].sort().join() === ['id', 'status', 'steps { key name }'].sort().join();
      expect(trusted.lists(parse(`query A($id: ID!) { job(id: $id) { ${fields.join(' ')} } }`))).toBe(listed);
    }),
  );
});

it('refuses to start on a manifest that is not one, with a configuration error naming the file, before opening anything', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bad-manifest-'));
  try {
    const file = path.join(dir, 'manifest.json');
    for (const content of ['not json', '["query { jobs { id } }"]', '{"a": 1}', '{"a": "query {"}']) {
      await writeFile(file, content);
      // A data directory that does not exist: the start stops before it would be created.
      const config = loadConfig({ TRUSTED_DOCUMENTS: file, DATA_DIR: path.join(dir, 'data'), LOG_LEVEL: 'silent' });
      const started = createApp(config, createLogger('silent'));
      await expect(started).rejects.toBeInstanceOf(ConfigError);
      await expect(started).rejects.toThrow(`TRUSTED_DOCUMENTS: ${file}`);
    }
    await expect(readFile(path.join(dir, 'data', 'PG_VERSION'))).rejects.toThrow();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('the project manifest is valid', () => {
  expect(TrustedDocuments.load([path.join(repoRoot, PROJECT_MANIFEST)]).size).toBeGreaterThan(10);
});

it('tells apart documents that differ only inside a string value, or in the order of a fragment’s mutations', () => {
  const trusted = new TrustedDocuments([
    manifestOf([parse('query L { jobs(type: "a b") { id } }')]),
    // As written (the client preset's printing would sort the fragment's fields, and so change the document).
    { m: 'mutation M($id: ID!) { ...F } fragment F on Mutation { heartbeat(id: $id) { id } cancelJob(id: $id) { success } }' },
  ]);
  expect(trusted.lists(parse('query L { jobs(type: "a b") { id } }'))).toBe(true);
  expect(trusted.lists(parse('query L { jobs(type: "a    b") { id } }'))).toBe(false);
  expect(trusted.lists(parse('mutation M($id: ID!) { ...F }\nfragment F on Mutation { heartbeat(id: $id) { id } cancelJob(id: $id) { success } }'))).toBe(true);
  expect(trusted.lists(parse('mutation M($id: ID!) { ...F } fragment F on Mutation { cancelJob(id: $id) { success } heartbeat(id: $id) { id } }'))).toBe(false);
});

describe('automatic persisted queries’ registrations', () => {
  const principal = (workspaceId: string, token?: Principal['token']): Principal => ({ keyId: 'k', workspaceId, scopes: new Set(['jobs:read']), token });
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  const register = (documents: PersistedDocuments, who: Principal, query: string) =>
    documents.documentOf({ query, extensions: { persistedQuery: { version: 1, sha256Hash: sha256(query) } } }, who);
  const known = (documents: PersistedDocuments, who: Principal, query: string) => {
    try {
      return documents.documentOf({ extensions: { persistedQuery: { version: 1, sha256Hash: sha256(query) } } }, who) === query;
    } catch (error) {
      expect((error as GraphQLError).extensions.code).toBe('PERSISTED_QUERY_NOT_FOUND');
      return false;
    }
  };

  it('keeps a bounded number and size of documents per workspace, only documents that parse, evicting the workspace’s own', () => {
    const documents = new PersistedDocuments(undefined);
    const flooder = principal('flooder');
    const quiet = principal('quiet');
    register(documents, quiet, '{ jobs { id } }');
    const flood = Array.from({ length: 20_000 }, (_, i) => `{ a${i}: viewer { scopes } }`);
    for (const query of flood) register(documents, flooder, query);
    const kept = flood.filter((query) => known(documents, flooder, query));
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThanOrEqual(PERSISTED_QUERIES.documentsPerWorkspace);
    expect(kept.reduce((bytes, query) => bytes + 2 * query.length + PERSISTED_QUERIES.bytesPerEntry, 0)).toBeLessThanOrEqual(
      PERSISTED_QUERIES.bytesPerWorkspace,
    );
    expect(known(documents, quiet, '{ jobs { id } }')).toBe(true);
    register(documents, flooder, 'ab');
    expect(known(documents, flooder, 'ab')).toBe(false);
  });

  it('keeps an access token’s registrations apart from its workspace’s keys’, and tokens of other restrictions’', () => {
    const documents = new PersistedDocuments(undefined);
    const query = '{ jobs(competitorId: "acme-secret") { id } }';
    register(documents, principal('w'), query);
    const token = (competitorId: string): Principal['token'] => ({ id: competitorId, expiresAt: Date.now() + 60_000, restriction: { competitorId } });
    expect(known(documents, principal('w'), query)).toBe(true);
    expect(known(documents, principal('w', token('other')), query)).toBe(false);
    register(documents, principal('w', token('acme')), '{ viewer { scopes } }');
    expect(known(documents, principal('w', token('acme')), '{ viewer { scopes } }')).toBe(true);
    expect(known(documents, principal('w', token('other')), '{ viewer { scopes } }')).toBe(false);
    expect(known(documents, principal('w'), '{ viewer { scopes } }')).toBe(false);
  });

  it('refuses a query that is not a string with 400, whatever the id', () => {
    const documents = new PersistedDocuments(undefined);
    for (const query of [123, {}, true, ['{ jobs { id } }']]) {
      expect(() =>
        documents.documentOf({ query: query as never, extensions: { persistedQuery: { version: 1, sha256Hash: 'a'.repeat(64) } } }, principal('w')),
      ).toThrow(expect.objectContaining({ extensions: expect.objectContaining({ code: 'BAD_USER_INPUT', http: { status: 400 } }) }));
    }
  });
});
