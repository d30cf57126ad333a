import type { IncomingMessage } from 'node:http';

export type BodyVerdict = { ok: true } | { ok: false; status: 411 | 413; code: string; message: string };

/**
 * Refuses oversized bodies before anything reads them. Node's parser never reads past a declared
 * Content-Length, so bounding that header bounds the body; a chunked body has no length to check
 * up front, so it must declare one (411) rather than stream an unbounded amount into yoga.
 */
export function checkBodySize(req: IncomingMessage, maxBytes: number): BodyVerdict {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    const length = Number(declared);
    if (Number.isFinite(length) && length > maxBytes) {
      return { ok: false, status: 413, code: 'PAYLOAD_TOO_LARGE', message: `Request bodies are limited to ${maxBytes} bytes.` };
    }
    return { ok: true };
  }
  if (req.headers['transfer-encoding'] !== undefined) {
    return { ok: false, status: 411, code: 'LENGTH_REQUIRED', message: 'Send a Content-Length header with the request body.' };
  }
  return { ok: true };
}
