import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';

const run = promisify(execFile);

/**
 * A PostgreSQL cluster of a test's own, on a port of its own, that the test may stop and start
 * (the shared server on 5432 must stay up for every other test). Built with the server binaries
 * of the machine's PostgreSQL (`pg_config --bindir`); as root, they run as the `postgres` user,
 * since PostgreSQL refuses to run as root.
 */
export interface OwnCluster {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it and removes its files. */
  remove(): Promise<void>;
}

export async function createOwnCluster(): Promise<OwnCluster> {
  const bindir = (await run('pg_config', ['--bindir'])).stdout.trim();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'jobs-gateway-cluster-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
    await fs.chown(dir, Number(uid.stdout), Number(gid.stdout));
  }
  const pg = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', path.join(bindir, tool), ...args]) : run(path.join(bindir, tool), args);

  const data = path.join(dir, 'data');
  await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '--no-instructions']);
  const port = await freePort();
  // The socket lives in the cluster's directory: nothing shared with the machine's server.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`;
  const start = async () => void (await pg('pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', 'start']));
  const stop = async () => void (await pg('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']));
  await start();
  let removed = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop,
    remove: async () => {
      if (removed) return;
      removed = true;
      await stop().catch(() => {});
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
