import { expect, it } from 'vitest';
import { CONFIG_VARIABLES, configDefault } from '../../src/config.js';
import { readDoc } from '../helpers/docs.js';

/** The README's configuration table: one row per variable, `name`, default, meaning. */
async function readmeTable(): Promise<Map<string, string>> {
  const readme = await readDoc('docs/operations.md');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('### Limits'));
  const rows = [...section.matchAll(/^\| `([A-Z0-9_]+)` \| ([^|]+) \|/gm)];
  return new Map(rows.map(([, name, value]) => [name!, value!.trim()]));
}

it("the README's configuration table lists exactly the variables config.ts reads, with their defaults", async () => {
  const table = await readmeTable();
  expect([...table.keys()].sort()).toEqual([...CONFIG_VARIABLES].sort());
  for (const name of CONFIG_VARIABLES) {
    const fallback = configDefault(name);
    // A variable without a default in the schema says in words what happens when it is unset.
    if (fallback === undefined) expect(table.get(name), name).not.toMatch(/^`/);
    else expect(table.get(name), name).toBe(`\`${fallback}\``);
  }
});
