import { expect, it } from 'vitest';
import { CONFIG_VARIABLES, ConfigError, configDefault, loadConfig } from '../../src/config.js';
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

it('turns tracing on only when an OTLP endpoint or the otlp exporter is asked for, and off with OTEL_SDK_DISABLED or none', () => {
  expect(loadConfig({}).tracing).toBeUndefined();
  expect(loadConfig({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }).tracing).toBeUndefined();
  expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual(
    expect.objectContaining({ url: 'http://collector:4318/v1/traces', sampler: 'parentbased_always_on', samplerArg: 1, serviceName: 'jobs-gateway' }),
  );
  expect(loadConfig({ OTEL_TRACES_EXPORTER: 'otlp' }).tracing?.url).toBe('http://localhost:4318/v1/traces');
  expect(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c.example/traces', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://other' }).tracing?.url).toBe(
    'https://c.example/traces',
  );
  expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).tracing).toBeUndefined();
  expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).tracing).toBeUndefined();
  expect(
    loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=a%2Cb, x=1',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod',
    }).tracing,
  ).toEqual(expect.objectContaining({ headers: { 'api-key': 'a,b', x: '1' }, resourceAttributes: { 'deployment.environment.name': 'prod' } }));
  for (const bad of [{ OTEL_TRACES_SAMPLER_ARG: '2' }, { OTEL_TRACES_SAMPLER: 'sometimes' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://c' }]) {
    expect(() => loadConfig(bad)).toThrow(ConfigError);
  }
});

it('takes FEED_BUS as a nats:// URL with PostgreSQL only', () => {
  const postgres = { DATABASE_URL: 'postgres://localhost/jobs' };
  expect(loadConfig({ ...postgres, FEED_BUS: 'nats://user:secret@bus.internal:4222' }).feedBus).toBe('nats://user:secret@bus.internal:4222');
  expect(loadConfig({ ...postgres, FEED_BUS: '' }).feedBus).toBeUndefined();
  for (const bad of [
    'redis://localhost:6379',
    'nats://',
    'nats://host/path',
    'localhost:4222',
    'nats://u:secret@host:99999',
    'nats://u:p%zzsecret@host:4222',
  ]) {
    expect(() => loadConfig({ ...postgres, FEED_BUS: bad }), bad).toThrow(ConfigError);
    // The error names the variable, never what it held (a password, say).
    expect(() => loadConfig({ ...postgres, FEED_BUS: bad })).not.toThrow(/secret/);
  }
  // The embedded database serves one instance: a bus there is a mistake, said at start.
  expect(() => loadConfig({ FEED_BUS: 'nats://localhost:4222' })).toThrow(/FEED_BUS: needs DATABASE_URL/);
});
