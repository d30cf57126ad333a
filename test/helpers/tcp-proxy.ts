import net from 'node:net';

/**
 * A TCP proxy of the tests' own in front of PostgreSQL that can go silent: while silent it
 * forwards nothing in either direction and closes nothing, as a network partition looks to both
 * ends; what was sent meanwhile is held and delivered when it speaks again (as TCP would, by
 * retransmitting).
 */
export class TcpProxy {
  private readonly sockets = new Set<net.Socket>();
  private readonly held: Array<[net.Socket, Buffer]> = [];
  private silent = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      const forward = (from: net.Socket, to: net.Socket) =>
        from.on('data', (chunk) => {
          if (proxy.silent) proxy.held.push([to, chunk]);
          else to.write(chunk);
        });
      forward(client, upstream);
      forward(upstream, client);
      for (const socket of [client, upstream]) {
        proxy.sockets.add(socket);
        // Either end closing closes the other, unless silent: a partition carries no close either.
        socket
          .on('error', () => {})
          .on('close', () => {
            proxy.sockets.delete(socket);
            if (!proxy.silent) (socket === client ? upstream : client).destroy();
          });
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    // The handler above reads it: made before the first connection can arrive.
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** Stops forwarding on every connection, open or new, without closing any. */
  silence(): void {
    this.silent = true;
  }

  /** Forwards again, first what was held. */
  speak(): void {
    this.silent = false;
    for (const [to, chunk] of this.held.splice(0)) if (!to.destroyed) to.write(chunk);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
