import { AccessTokens } from './access-tokens.js';
import type { ApiKeyStore } from './api-keys.js';
import type { Principal } from './scopes.js';

/**
 * What a presented credential stands for, whichever it is: an API key (ApiKeyStore), or an access
 * token (AccessTokens) whose minting key must still be active. Everything that authenticates a
 * caller (HTTP, WebSocket, Server-Sent Events) goes through it, behind the per-address budget.
 */
export class Authenticator {
  constructor(
    private readonly keys: ApiKeyStore,
    private readonly tokens: AccessTokens,
  ) {}

  /** A key's principal without a database read, when one is at hand (see ApiKeyStore.answerWithoutLookup); tokens always verify. */
  answerWithoutLookup(credential: string): Principal | Promise<Principal | null> | undefined {
    return AccessTokens.looksLikeToken(credential) ? undefined : this.keys.answerWithoutLookup(credential);
  }

  /** The caller's principal, or null when the credential is not a valid, current key or token. */
  async authenticate(credential: string): Promise<Principal | null> {
    if (!AccessTokens.looksLikeToken(credential)) return this.keys.authenticate(credential);
    const principal = await this.tokens.verify(credential);
    if (!principal) return null;
    return (await this.keys.isActive(principal.keyId)) ? principal : null;
  }
}
