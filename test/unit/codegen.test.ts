import fs from 'node:fs/promises';
import path from 'node:path';
import { generate } from '@graphql-codegen/cli';
import { expect, it } from 'vitest';
import config from '../../codegen.js';
import { repoRoot } from '../helpers/paths.js';

it('the committed schema.graphql and typed documents match what `npm run codegen` generates now', async () => {
  const outputs = (await generate({ ...config, cwd: repoRoot, silent: true }, false)) as Array<{ filename: string; content: string }>;
  expect(outputs.map((o) => o.filename).sort()).toEqual(Object.keys(config.generates).sort());
  for (const output of outputs) {
    const committed = await fs.readFile(path.join(repoRoot, output.filename), 'utf8');
    expect(committed, `${output.filename} is stale: run npm run codegen`).toBe(output.content);
  }
});
