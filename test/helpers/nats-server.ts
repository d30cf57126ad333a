import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { holdPort } from './gateway-process.js';

export interface NatsServer {
  /** `nats://127.0.0.1:<port>`: what FEED_BUS takes. */
  readonly url: string;
  readonly port: number;
  /** Kills the server (SIGKILL: an outage, not a shutdown). */
  kill(): Promise<void>;
  /** Starts it again on the same port. */
  restart(): Promise<void>;
}

/**
 * A NATS server of the test's own (Debian's nats-server, which .ci/run installs), on a free port:
 * a test may take it down without touching the machine's server, or another test's.
 */
export async function startNatsServer(): Promise<NatsServer> {
  const held = await holdPort();
  const port = held.port;
  await held.close();
  let child: ChildProcess | undefined;
  const start = async () => {
    const started = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    child = started;
    const failed = new Promise<never>((_, reject) => {
      started.once('error', (error) => reject(new Error(`nats-server could not start (is it installed? .ci/run installs it): ${error.message}`)));
      started.once('exit', (code) => reject(new Error(`nats-server exited with ${code}`)));
    });
    failed.catch(() => undefined);
    await Promise.race([answers(port), failed]);
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill: async () => {
      const running = child;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGKILL');
      await exited;
    },
    restart: start,
  };
}

/** Resolves once something accepts connections on the port. */
async function answers(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing answered on port ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
