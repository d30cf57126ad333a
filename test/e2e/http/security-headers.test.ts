import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { describeDb } from '../../helpers/databases.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';

// What a browser is told about the gateway's pages and API: a Content-Security-Policy per page,
// no framing unless FRAME_ANCESTORS allows it, no sniffing, no Referer, and CORS without credentials.

describeDb('security headers and CORS', () => {
  let t: TestApp;
  let key: string;

  beforeAll(async () => {
    t = await startTestApp();
    key = await t.createKey('headers');
  });

  afterAll(async () => {
    await t.close();
  });

  const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers });

  it('sends the dashboard with a policy that allows its own script and style only, and forbids framing', async () => {
    const page = await get(`${t.url}/`);
    expect(page.status).toBe(200);
    const policy = page.headers.get('content-security-policy') ?? '';
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"])
      expect(policy).toContain(directive);
    expect(policy).not.toContain('unsafe');
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it("allows GraphiQL's inline editor by its hash, and no other inline script", async () => {
    const page = await get(`${t.url}/graphql`, { accept: 'text/html', 'accept-encoding': 'identity' });
    const html = await page.text();
    const policy = page.headers.get('content-security-policy') ?? '';
    const scriptSrc = policy.split('; ').find((directive) => directive.startsWith('script-src '))!;
    const inline = [...html.matchAll(/<script(?:\s[^>]*)?>([\s\S]*?)<\/script>/g)].map((m) => m[1]!).filter((code) => code.trim() !== '');
    expect(inline.length).toBeGreaterThan(0);
    for (const code of inline) expect(scriptSrc).toContain(`'sha256-${createHash('sha256').update(code).digest('base64')}'`);
    expect(scriptSrc).not.toContain("'unsafe-inline'");
    expect(scriptSrc).not.toContain("'unsafe-eval'");
    expect(policy).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    // A revalidated copy carries the same policy.
    const again = await get(`${t.url}/graphql`, { accept: 'text/html', 'if-none-match': page.headers.get('etag')! });
    expect(again.status).toBe(304);
    expect(again.headers.get('content-security-policy')).toBe(policy);
  });

  it('marks every response nosniff and no-referrer: JSON, errors, health', async () => {
    for (const [path, apiKey] of [
      ['/api/jobs', key],
      ['/api/jobs', undefined],
      ['/healthz', undefined],
      ['/nowhere', undefined],
    ] as const) {
      const response = await get(`${t.url}${path}`, apiKey ? { 'x-api-key': apiKey } : {});
      await response.arrayBuffer();
      expect(response.headers.get('x-content-type-options'), path).toBe('nosniff');
      expect(response.headers.get('referrer-policy'), path).toBe('no-referrer');
    }
    const graphql = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: '{"query":"{ __typename }"}',
    });
    await graphql.arrayBuffer();
    expect(graphql.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('answers CORS without credentials, to any origin by default and to the listed ones with CORS_ORIGINS', async () => {
    const preflight = (url: string, origin: string) =>
      fetch(`${url}/graphql`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-api-key' },
      });
    const open = await preflight(t.url, 'https://anywhere.example');
    expect(open.headers.get('access-control-allow-origin')).toBe('https://anywhere.example');
    expect(open.headers.get('access-control-allow-credentials')).toBeNull();
    expect(open.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('x-api-key');

    const listed = await startTestApp({
      env: { CORS_ORIGINS: 'https://app.example.com, https://admin.example.com', FRAME_ANCESTORS: 'https://app.example.com' },
    });
    try {
      expect((await preflight(listed.url, 'https://admin.example.com')).headers.get('access-control-allow-origin')).toBe('https://admin.example.com');
      const refused = await preflight(listed.url, 'https://evil.example');
      expect(refused.headers.get('access-control-allow-origin')).not.toBe('https://evil.example');
      expect(refused.headers.get('access-control-allow-credentials')).toBeNull();
      // FRAME_ANCESTORS names who may frame the pages; X-Frame-Options cannot say that, so it is left out.
      const page = await get(`${listed.url}/`);
      expect(page.headers.get('content-security-policy')).toContain('frame-ancestors https://app.example.com');
      expect(page.headers.get('x-frame-options')).toBeNull();
    } finally {
      await listed.close();
    }
  });
});

it('refuses a FRAME_ANCESTORS that would end the policy, and CORS_ORIGINS that are no origins (property)', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), fc.constantFrom(';', ',', '\r', '\n'), fc.string({ maxLength: 30 }), (before, breaker, after) => {
      expect(() => loadConfig({ FRAME_ANCESTORS: `${before}x${breaker}x${after}` })).toThrow(ConfigError);
    }),
  );
  for (const origins of ['not an origin', 'https://ok.example, nope', ',']) expect(() => loadConfig({ CORS_ORIGINS: origins }), origins).toThrow(ConfigError);
  // As browsers send an Origin: no path, no trailing slash, default port dropped.
  expect(loadConfig({ CORS_ORIGINS: 'https://a.example/,https://b.example:443, *' }).corsOrigins).toEqual(['https://a.example', 'https://b.example', '*']);
});
