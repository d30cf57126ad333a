import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../../src/db/database.js';
import { createEmbeddedClusterApart } from '../../../src/db/embedded-cluster.js';
import { dbKind } from '../../helpers/databases.js';

/** The embedded database's first start (what `npm start` and `npm run demo` do on an empty directory). */
describe.skipIf(dbKind !== 'embedded')('the embedded database on an empty directory', () => {
  it('is created by a child process once, then opened in-process with its data kept', { timeout: 120_000 }, async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-cluster-'));
    try {
      // A child that fails leaves nothing behind (here: start parameters PGlite cannot start with).
      expect(await createEmbeddedClusterApart(dir, [])).toMatchObject({ created: false, failure: expect.stringContaining('PGlite') });
      expect(await fs.readdir(dir)).toEqual([]);
      // A staging directory left by a start that was cut off goes.
      await fs.mkdir(path.join(dir, '.initdb-1'));
      await fs.writeFile(path.join(dir, '.initdb-1', 'half'), 'x');
      expect(await createEmbeddedClusterApart(dir, PGlite.defaultStartParams)).toEqual({ created: true });
      expect((await fs.readFile(path.join(dir, 'PG_VERSION'), 'utf8')).trim()).toMatch(/^\d+$/);
      expect((await fs.readdir(dir)).filter((entry) => entry.startsWith('.initdb'))).toEqual([]);
      // A cluster that exists is left alone.
      expect(await createEmbeddedClusterApart(dir, PGlite.defaultStartParams)).toEqual({ created: false });

      const first = await openDatabase({ dataDir: dir });
      await first.sql.exec('CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);');
      await first.close();
      const again = await openDatabase({ dataDir: dir });
      expect(await again.sql.query<{ n: number }>('SELECT n FROM kept')).toEqual([{ n: 42 }]);
      await again.close();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('a child that cannot create the cluster says why, and the server does not start on that path either', async () => {
    const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-cluster-')), 'not-a-directory');
    await fs.writeFile(file, 'x');
    try {
      expect(await createEmbeddedClusterApart(file, PGlite.defaultStartParams)).toMatchObject({ created: false, failure: expect.any(String) });
      await expect(openDatabase({ dataDir: file })).rejects.toThrow();
    } finally {
      await fs.rm(path.dirname(file), { recursive: true, force: true });
    }
  });
});
