import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Caps the TCP connections one HTTP server holds. Node's own `maxConnections` refuses every new
 * connection once the cap is reached, so a client that opens connections and sends nothing (or
 * half a header) locks everyone out until timeouts cut them. Here a new connection at the cap
 * takes the place of the oldest one that has no request in progress (idle keep-alive, or headers
 * never finished); only when every connection is busy is the new one refused. WebSockets count
 * while open and are never evicted (their keys bound them: MAX_CONNECTIONS_PER_KEY).
 */
export function guardConnections(server: Server, maxConnections: number): void {
  /** Open connections, oldest first, with their requests in progress (-1: upgraded to a WebSocket). */
  const sockets = new Map<Socket, { busy: number }>();

  server.on('connection', (socket: Socket) => {
    if (sockets.size >= maxConnections && !evictIdle()) {
      socket.destroy();
      return;
    }
    sockets.set(socket, { busy: 0 });
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('request', (req, res) => {
    const state = sockets.get(req.socket);
    if (!state) return;
    state.busy++;
    res.once('close', () => state.busy--);
  });
  server.on('upgrade', (req) => {
    const state = sockets.get(req.socket);
    if (state) state.busy = -1;
  });

  function evictIdle(): boolean {
    for (const [socket, state] of sockets) {
      if (state.busy === 0) {
        sockets.delete(socket);
        socket.destroy();
        return true;
      }
    }
    return false;
  }
}
