/**
 * The port is taken (most often by another jobs-gateway, or `npm run demo` beside `npm start`): its
 * message is the one line a person needs, printed instead of Node's EADDRINUSE stack trace.
 */
export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    command: string,
  ) {
    const other = port === 4001 ? 4002 : 4001;
    super(`Port ${port} is in use (another jobs-gateway or \`npm run demo\`?); set PORT to another port, e.g. PORT=${other} ${command}`);
  }
}

/** A PortInUseError when `error` says listening failed because the port is taken; else `error` itself. */
export function explainListenError(error: unknown, port: number, command: string): unknown {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE' ? new PortInUseError(port, command) : error;
}
