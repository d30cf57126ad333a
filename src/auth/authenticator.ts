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

  /**
   * The principal without a database read, when that is possible: a key checked lately (see
   * ApiKeyStore.answerWithoutLookup), or a token whose signing key is known here (its check is an
   * HMAC, not a read). Such answers spend none of the address's budget for bad keys, which exists
   * to bound reads: many valid tokens behind one address (a NAT, a server rendering pages) are not
   * refused for it. A token whose minting key was not checked lately still costs that one read.
   */
  answerWithoutLookup(credential: string): Principal | Promise<Principal | null> | undefined {
    if (!AccessTokens.looksLikeToken(credential)) return this.keys.answerWithoutLookup(credential);
    if (!this.tokens.knowsKeyOf(credential)) return undefined;
    return this.tokens.verify(credential).then(async (principal) => {
      if (!principal) return null;
      return this.keys.knownActive(principal.keyId) || (await this.keys.isActive(principal.keyId)) ? principal : null;
    });
  }

  /** The caller's principal, or null when the credential is not a valid, current key or token. */
  async authenticate(credential: string): Promise<Principal | null> {
    if (!AccessTokens.looksLikeToken(credential)) return this.keys.authenticate(credential);
    const principal = await this.tokens.verify(credential);
    if (!principal) return null;
    return (await this.keys.isActive(principal.keyId)) ? principal : null;
  }
}
