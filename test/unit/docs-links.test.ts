import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { repoRoot } from '../helpers/paths.js';

/** GitHub's anchor of a heading: lowercase, punctuation dropped, spaces as hyphens. */
const anchorOf = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

async function anchors(file: string): Promise<Set<string>> {
  const text = await fs.readFile(file, 'utf8');
  const withoutCode = text.replace(/```[\s\S]*?```/g, '');
  return new Set([...withoutCode.matchAll(/^#{1,6} (.+)$/gm)].map((match) => anchorOf(match[1]!)));
}

it('every link between the README, CHANGELOG.md and docs/ reaches a file, and a heading when it names one', async () => {
  const pages = ['README.md', 'CHANGELOG.md', ...(await fs.readdir(path.join(repoRoot, 'docs'))).map((name) => `docs/${name}`)];
  let checked = 0;
  for (const page of pages) {
    const text = (await fs.readFile(path.join(repoRoot, page), 'utf8')).replace(/```[\s\S]*?```/g, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue; // no link leaves the repository, but an example URL may
      const [file, anchor] = target!.split('#');
      const resolved = file ? path.join(repoRoot, path.dirname(page), file) : path.join(repoRoot, page);
      await expect(fs.access(resolved), `${page} -> ${target}`).resolves.toBeUndefined();
      if (anchor) expect(await anchors(resolved), `${page} -> ${target}`).toContain(anchor);
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(15);
});
