import net from 'node:net';
import { afterAll, expect, it } from 'vitest';
import { dbKind, describeDb, freshDatabase } from '../../helpers/databases.js';
import { holdPort, runToExit, spawnGateway } from '../../helpers/gateway-process.js';
import { halfSentQuery } from '../../helpers/http.js';
import { openEventStream } from '../../helpers/sse-client.js';
import { startTestApp } from '../../helpers/test-app.js';
import { TestSocket } from '../../helpers/ws-client.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** Whether a process with this pid still exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describeDb('the production start: `npm start`, signalled as a supervisor does', () => {
  // One signal per project (each a few npm and server processes): SIGINT (Ctrl+C) on the embedded
  // database, SIGTERM (supervisors, load balancers) on PostgreSQL.
  for (const signal of [dbKind === 'embedded' ? 'SIGINT' : 'SIGTERM'] as const) {
    it(`${signal} to the npm process drains and exits 0 within SHUTDOWN_TIMEOUT_MS, nothing left running`, { timeout: 60_000 }, async () => {
      const database = await freshDatabase();
      cleanups.push(() => database.drop());
      const seed = await startTestApp({ database });
      const key = await seed.createKey('supervised');
      await seed.close();

      const shutdownTimeoutMs = 3_000;
      const gateway = await spawnGateway({ ...database.env, SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs) }, { npmStart: true });
      const serverPid = Number((await gateway.waitForLog(/listening on/)).pid);
      cleanups.push(() => {
        if (alive(serverPid)) process.kill(serverPid, 'SIGKILL');
        if (gateway.child.exitCode === null) gateway.child.kill('SIGKILL');
      });
      // npm execs the server: no tsx, no shell in between.
      expect(serverPid).not.toBe(gateway.child.pid);

      // Open at the signal: a subscriber, a WebSocket peer that stopped reading, an SSE stream,
      // and a request whose body is only half sent.
      const socket = await TestSocket.open(gateway.url, { apiKey: key });
      socket.subscribe('1', 'subscription { jobUpdated { id } }');
      const paused = await TestSocket.open(gateway.url, { apiKey: key });
      (paused.socket as unknown as { _socket: net.Socket })._socket.pause();
      const events = await openEventStream(gateway.url, key, 'subscription { jobUpdated { id } }');
      const inFlight = await halfSentQuery(gateway.url, key);
      await gateway.waitForLog(/^request$/);

      const began = Date.now();
      gateway.child.kill(signal);
      await gateway.waitForLog(/shutting down/);
      const response = await inFlight.finish();
      expect(response).toMatch(/^HTTP\/1\.1 200 OK/);
      expect(response).toContain('{"data":{"__typename":"Query"}}');
      expect((await socket.waitForClose()).code).toBe(1001);
      await events.rest();

      expect(await gateway.exited).toBe(0);
      // Bounded by SHUTDOWN_TIMEOUT_MS, not by the paused peer (ws would wait 30 s for its close
      // frame); the margin is for a machine loaded by the rest of the suite.
      expect(Date.now() - began).toBeLessThan(shutdownTimeoutMs + 10_000);
      await gateway.waitForLog(/^stopped$/);
      expect(alive(serverPid)).toBe(false);
    });
  }

  it('a port already in use: one line naming the port and PORT on stderr, no stack trace, exit code 1', { timeout: 60_000 }, async () => {
    const database = await freshDatabase();
    cleanups.push(() => database.drop());
    // Another server (another gateway, `npm run demo`) holds the port.
    const held = await holdPort();
    cleanups.push(() => held.close());
    const { code, stderr } = await runToExit('npm', ['start', '--silent'], { ...database.env, PORT: String(held.port) });
    expect(stderr).toBe(`Port ${held.port} is in use (another jobs-gateway or \`npm run demo\`?); set PORT to another port, e.g. PORT=4001 npm start\n`);
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(code).toBe(1);
  });
});
