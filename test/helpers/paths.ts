import { fileURLToPath } from 'node:url';

/** The repository's root directory, for tests that read its files or run its commands. */
export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
