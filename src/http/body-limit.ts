import type { IncomingMessage } from 'node:http';
import { REFUSED_BODY_LINGER } from '../limits/fixed.js';

export type BodyVerdict = { ok: true } | { ok: false; code: 'LENGTH_REQUIRED' | 'PAYLOAD_TOO_LARGE'; message: string };

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
      return { ok: false, code: 'PAYLOAD_TOO_LARGE', message: `Request bodies are limited to ${maxBytes} bytes.` };
    }
    return { ok: true };
  }
  if (req.headers['transfer-encoding'] !== undefined) {
    return { ok: false, code: 'LENGTH_REQUIRED', message: 'Send a Content-Length header with the request body.' };
  }
  return { ok: true };
}

/**
 * Reads and discards the body of a request that was answered without it (413, 411), for a bounded
 * time, as nginx's lingering close does: closing while the client is still sending makes the kernel
 * reset the connection, and the client sees ECONNRESET instead of the answer it could act on.
 */
export function discardRefusedBody(req: IncomingMessage): void {
  let received = 0;
  const cut = () => req.socket.destroy();
  const timer = setTimeout(cut, REFUSED_BODY_LINGER.ms);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > REFUSED_BODY_LINGER.maxBytes) cut();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

/**
 * A request's body as text, for the REST routes that take one. Its size is bounded before this is
 * called (checkBodySize: a Content-Length within MAX_BODY_BYTES, or none and no chunked body).
 */
export async function readBodyText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
