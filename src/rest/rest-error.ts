import { type ErrorCode, restStatusOf } from '../errors.js';

/** A REST error, sent as `{"error": {"code", "message"}}` with its code's status (src/errors.ts). */
export class RestError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.status = restStatusOf(code);
  }
}
