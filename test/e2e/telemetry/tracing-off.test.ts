import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { describeDb, freshDatabase } from '../../helpers/databases.js';
import { spawnGateway } from '../../helpers/gateway-process.js';
import { OtlpReceiver } from '../../helpers/otlp-receiver.js';

/**
 * The build as `npm start` runs it (dist/), with a module hook of the test's own recording every
 * module the process resolves: tracing off loads none of OpenTelemetry's (the bundle keeps it in a
 * chunk of its own, imported only when OTEL_* turns tracing on), and on loads it.
 */

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describeDb('OpenTelemetry off', () => {
  it('loads no OpenTelemetry module in the built server unless OTEL_* turns tracing on, and never Prisma’s client', { timeout: 60_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'module-log-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const hook = path.join(dir, 'record-modules.mjs');
    await writeFile(
      hook,
      `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({
  resolve(specifier, context, next) {
    appendFileSync(process.env.MODULE_LOG, specifier + '\\n');
    return next(specifier, context);
  },
});
`,
    );
    const receiver = await OtlpReceiver.start();
    const database = await freshDatabase();
    cleanups.push(() => database.drop());

    const modulesLoaded = async (env: Record<string, string>) => {
      const log = path.join(dir, `modules-${Object.keys(env).length}.log`);
      const gateway = await spawnGateway({
        ...database.env,
        ...env,
        MODULE_LOG: log,
        NODE_OPTIONS: `--import=${pathToFileURL(hook).href}`,
        WARM_UP_ROUNDS: '0',
      });
      try {
        // A request with a key to look up, so that whatever a request loads has been loaded.
        const headers = { 'content-type': 'application/json', 'x-api-key': 'jg_not-a-key-anyone-issued' };
        expect((await fetch(`${gateway.url}/graphql`, { method: 'POST', headers, body: '{"query":"{ __typename }"}' })).status).toBe(401);
      } finally {
        gateway.child.kill('SIGTERM');
        await gateway.exited;
      }
      return (await readFile(log, 'utf8')).split('\n');
    };

    const off = await modulesLoaded({});
    expect(
      off.some((specifier) => specifier.includes('graphql-yoga')),
      'the hook records the server’s modules',
    ).toBe(true);
    // Only OpenTelemetry's API, which Prisma's client runtime imports for a tracing of its own (a few
    // hundred KB of heap): none of the SDK, the exporter or their dependencies.
    expect(off.filter((specifier) => specifier.includes('opentelemetry') && specifier !== '@opentelemetry/api')).toEqual([]);
    // Nor Prisma's client (its adapters load with it): its query compiler cost the idle server ~30 MiB.
    expect(off.filter((specifier) => /prisma-adapter|adapter-pg/.test(specifier))).toEqual([]);
    const on = await modulesLoaded({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    expect(on.some((specifier) => specifier.includes('@opentelemetry/sdk-trace'))).toBe(true);
  });
});
