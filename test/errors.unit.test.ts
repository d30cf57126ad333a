import fs from 'node:fs/promises';
import { expect, it } from 'vitest';
import { ERROR_CODES, type ErrorCode, restStatusOf } from '../src/errors.js';

const readme = await fs.readFile(new URL('../README.md', import.meta.url), 'utf8');

it('the README names every error code of the catalog', () => {
  for (const code of Object.keys(ERROR_CODES)) expect(readme, code).toContain(`\`${code}\``);
});

it("the README's REST error table gives each code the status the catalog does", () => {
  const section = readme.slice(readme.indexOf('## REST'), readme.indexOf('## GraphQL'));
  const rows = [...section.matchAll(/^\| (\d{3})(?: \/ (\d{3}))? \| `([A-Z_]+)`(?: \/ `([A-Z_]+)`)? \|/gm)];
  expect(rows.length).toBeGreaterThanOrEqual(10);
  for (const [, status, secondStatus, code, secondCode] of rows) {
    expect(restStatusOf(code as ErrorCode), code).toBe(Number(status));
    if (secondCode) expect(restStatusOf(secondCode as ErrorCode), secondCode).toBe(Number(secondStatus));
  }
});
