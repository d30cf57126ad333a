import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/**
 * The headers every response carries: no content sniffing (a JSON body is never run as a script
 * or rendered as a page), and no Referer to other sites (URLs carry job ids).
 */
export function setResponseSecurityHeaders(res: ServerResponse): void {
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('referrer-policy', 'no-referrer');
}

/**
 * A page's Content-Security-Policy and framing headers. `frameAncestors` is the CSP source list of
 * sites that may frame it (FRAME_ANCESTORS; `'none'` by default: the dashboard has a Cancel button,
 * which a framing site could trick a user into clicking). X-Frame-Options says the same to old
 * browsers, and can only when nobody may frame the page.
 */
function pageHeaders(directives: string[], frameAncestors: string): Record<string, string> {
  return {
    'content-security-policy': [...directives, `frame-ancestors ${frameAncestors}`].join('; '),
    ...(frameAncestors === "'none'" ? { 'x-frame-options': 'DENY' } : {}),
  };
}

/** The dashboard: its own script and stylesheet only, talking to this origin only. */
export function dashboardPageHeaders(frameAncestors: string): Record<string, string> {
  return pageHeaders(
    ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "img-src 'self' data:", "base-uri 'none'", "form-action 'none'"],
    frameAncestors,
  );
}

/**
 * GraphiQL's page: its inline scripts (the whole editor, the API key box) allowed by their hashes, and the workers
 * the editor starts from blob: URLs. Its styles are inline and injected at run time ('unsafe-inline'
 * for styles only: they cannot run code).
 */
export function graphiqlPageHeaders(html: string, frameAncestors: string): Record<string, string> {
  const hashes = [...html.matchAll(/<script(?:\s[^>]*)?>([\s\S]*?)<\/script>/g)]
    .filter((match) => match[1]!.trim() !== '')
    .map((match) => `'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`);
  return pageHeaders(
    [
      "default-src 'none'",
      `script-src 'self' ${hashes.join(' ')} blob:`,
      "worker-src 'self' blob:",
      "style-src 'self' 'unsafe-inline'",
      "font-src 'self' data:",
      "img-src 'self' data:",
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
    ],
    frameAncestors,
  );
}
