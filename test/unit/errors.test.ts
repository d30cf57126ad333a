import { expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode, restStatusOf } from '../../src/errors.js';
import { readAllDocs, readDoc } from '../helpers/docs.js';

it('the documentation names every error code of the catalog', async () => {
  const docs = await readAllDocs();
  for (const code of Object.keys(ERROR_CODES)) expect(docs, code).toContain(`\`${code}\``);
});

it("docs/api.md's REST error table gives each code the status the catalog does", async () => {
  const readme = await readDoc('docs/api.md');
  const section = readme.slice(readme.indexOf('## REST'), readme.indexOf('## GraphQL'));
  const rows = [...section.matchAll(/^\| (\d{3})(?: \/ (\d{3}))? \| `([A-Z_]+)`(?: \/ `([A-Z_]+)`)? \|/gm)];
  expect(rows.length).toBeGreaterThanOrEqual(10);
  for (const [, status, secondStatus, code, secondCode] of rows) {
    expect(restStatusOf(code as ErrorCode), code).toBe(Number(status));
    if (secondCode) expect(restStatusOf(secondCode as ErrorCode), secondCode).toBe(Number(secondStatus));
  }
});
