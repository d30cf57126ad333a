import { type DestinationStream, pino, type Logger } from 'pino';

export type { Logger };

/** The one logger factory: API keys can arrive in headers, so those paths are always redacted. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      redact: {
        paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'apiKey', '*.apiKey', 'keyHash', '*.keyHash'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
