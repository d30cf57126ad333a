import type { Logger } from '../logger.js';
import type { ApiKeyStore } from './api-keys.js';

type OnRevoked = () => void;

/**
 * Ends what a key keeps open (WebSockets, Server-Sent Events streams) once the key is revoked,
 * whoever revoked it: the CLI, another instance, a SQL console. Requests authenticate one by one;
 * a stream authenticated once and would otherwise outlive its key. One query per interval checks
 * every key with something open on this instance. (A database trigger could NOTIFY revocations,
 * but polling also catches keys deleted outright and costs one indexed query per interval.)
 */
export class RevocationWatch {
  private readonly watchers = new Map<string, Set<OnRevoked>>();
  private readonly timer: NodeJS.Timeout;
  private checking = false;

  constructor(
    private readonly apiKeys: ApiKeyStore,
    intervalMs: number,
    private readonly logger: Logger,
  ) {
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  /** Calls `onRevoked` once, within an interval of the key's revocation; the result stops watching. */
  watch(keyId: string, onRevoked: OnRevoked): () => void {
    const callbacks = this.watchers.get(keyId) ?? new Set<OnRevoked>();
    callbacks.add(onRevoked);
    this.watchers.set(keyId, callbacks);
    return () => {
      callbacks.delete(onRevoked);
      if (callbacks.size === 0 && this.watchers.get(keyId) === callbacks) this.watchers.delete(keyId);
    };
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async check(): Promise<void> {
    if (this.checking || this.watchers.size === 0) return;
    this.checking = true;
    try {
      const keyIds = [...this.watchers.keys()];
      const active = await this.apiKeys.stillActive(keyIds);
      const revoked = keyIds.filter((keyId) => !active.has(keyId));
      this.apiKeys.forget(revoked);
      for (const keyId of revoked) {
        const callbacks = this.watchers.get(keyId);
        this.watchers.delete(keyId);
        for (const onRevoked of callbacks ?? []) onRevoked();
      }
    } catch (error) {
      this.logger.warn({ err: error }, 'could not recheck API keys; the next interval retries');
    } finally {
      this.checking = false;
    }
  }
}
