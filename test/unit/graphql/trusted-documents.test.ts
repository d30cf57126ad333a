import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { generate } from '@graphql-codegen/cli';
import fc from 'fast-check';
import { parse, printSchema } from 'graphql';
import { expect, it } from 'vitest';
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
