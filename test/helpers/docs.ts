import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from './paths.js';

/**
 * A page of the documentation: `README.md`, or a file of `docs/` (`docs/api.md`). Tests read the
 * page where a section lives, so that what it documents and what the code does cannot drift apart.
 */
export function readDoc(page: 'README.md' | `docs/${string}.md`): Promise<string> {
  return fs.readFile(path.join(repoRoot, page), 'utf8');
}

/** The README and every page of docs/, one after the other: for what may be documented anywhere. */
export async function readAllDocs(): Promise<string> {
  const pages = (await fs.readdir(path.join(repoRoot, 'docs'))).filter((name) => name.endsWith('.md')).sort();
  return (await Promise.all(['README.md', ...pages.map((name) => `docs/${name}` as const)].map((page) => readDoc(page as 'README.md')))).join('\n');
}
