import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A path of the package (prisma/migrations, dist/dashboard), whether the calling code runs from its
 * source (src/, in tests) or from the build (dist/, bundled into one file): the first one found up
 * from this module.
 */
export function packagePath(relative: string): string {
  const from = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, relative))) return path.join(dir, relative);
    if (path.dirname(dir) === dir) throw new Error(`${relative} not found above ${from}`);
  }
}
