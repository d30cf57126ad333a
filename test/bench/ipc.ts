import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The benchmark's processes talk over Node's IPC channel: each request carries an id, each reply
 * echoes it. Children are TypeScript, loaded through tsx.
 */
export interface Child {
  process: ChildProcess;
  request<T = unknown>(message: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export function spawnChild(script: string, env: Record<string, string | undefined> = {}, execArgv: string[] = []): Promise<Child> {
  const child = fork(fileURLToPath(new URL(script, import.meta.url)), [], {
    execArgv: ['--import', 'tsx', ...execArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 0;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  child.on('message', (message: { replyTo?: number; error?: string; value?: unknown }) => {
    if (message.replyTo === undefined) return;
    const waiter = pending.get(message.replyTo);
    pending.delete(message.replyTo);
    if (message.error) waiter?.reject(new Error(message.error));
    else waiter?.resolve(message.value);
  });
  child.on('exit', (code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`${script} exited with ${code}`));
    pending.clear();
  });
  const api: Child = {
    process: child,
    request: <T>(message: Record<string, unknown>, timeoutMs = 600_000) =>
      new Promise<T>((resolve, reject) => {
        const id = next++;
        const timer = setTimeout(() => reject(new Error(`${script}: no reply to ${String(message.cmd)} in ${timeoutMs} ms`)), timeoutMs);
        pending.set(id, {
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value as T);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
        child.send({ ...message, id });
      }),
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.send({ cmd: 'exit', id: -1 });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    child.once('message', (message: { ready?: boolean }) => (message.ready ? resolve(api) : reject(new Error('bad hello'))));
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
}

type Handler = (message: Record<string, unknown>) => unknown;

/** The child side: answer requests with `handlers[cmd]`. */
export function serveParent(handlers: Record<string, Handler>, onExit: () => Promise<void> | void): void {
  const answer = async (message: Record<string, unknown> & { id: number; cmd: string }) => {
    if (message.cmd === 'exit') {
      await onExit();
      process.exit(0);
    }
    try {
      const value = await handlers[message.cmd]?.(message);
      process.send!({ replyTo: message.id, value });
    } catch (error) {
      process.send!({ replyTo: message.id, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    }
  };
  process.on('message', (message: Record<string, unknown> & { id: number; cmd: string }) => void answer(message));
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true });
}
