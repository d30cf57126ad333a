import { type ChildProcess, spawn } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { repoRoot } from './paths.js';

export interface GatewayProcess {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far (pino JSON). */
  lines: string[];
  /** Resolves with the first log line whose message matches. */
  waitForLog(match: RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Runs the build of `src/main.ts` (`node dist/main.js`, what `npm start` execs), in a process of its own, on PORT=0. */
export async function spawnGateway(env: Record<string, string | undefined>, options: { npmStart?: boolean } = {}): Promise<GatewayProcess> {
  // With npmStart, the command the README documents, as a supervisor runs it: `npm start` (npm
  // then execs node); the child is npm.
  const [command, args] = options.npmStart ? ['npm', ['start', '--silent']] : [process.execPath, ['dist/main.js']];
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: Array<{ match: RegExp; resolve: (entry: Record<string, unknown>) => void }> = [];
  let buffer = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      lines.push(line);
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      for (const waiter of [...waiters]) {
        if (waiter.match.test(String(entry.msg))) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(entry);
        }
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (match: RegExp, timeoutMs = 30_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log matching ${match} within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      const done = (entry: Record<string, unknown>) => {
        clearTimeout(timer);
        resolve(entry);
      };
      for (const line of lines) {
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (match.test(String(entry.msg))) return done(entry);
        } catch {
          // not JSON
        }
      }
      waiters.push({ match, resolve: done });
      void exited.then((code) => reject(new Error(`gateway exited (${code}) before logging ${match}; stderr: ${stderr}`)));
    });

  const listening = await waitForLog(/listening on/);
  const url = String(listening.url).replace(/\/graphql$/, '');
  return { child, url, lines, waitForLog, exited };
}

/** Holds a port on 127.0.0.1, as another server would, until `close`. */
export async function holdPort(): Promise<{ port: number; close(): Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Runs a command of the package (`npm start`, `npm run demo`) to its end: what it wrote, and its exit code. */
export function runToExit(
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
