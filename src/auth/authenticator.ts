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
   * The principal when the per-address budget for bad keys need not be spent: a key checked lately
   * (see ApiKeyStore.answerWithoutLookup), or any token. The budget bounds database reads, and a
   * token costs none of its own: its check is an HMAC (remembered once it passes), a signing key
   * not known yet is read at most once a second whatever the tokens, and only a token that passed
   * may cost the read of its minting key. So many valid tokens behind one address (a NAT, a server
   * rendering pages) are never refused for it.
   */
  answerWithoutLookup(credential: string): Principal | Promise<Principal | null> | undefined {
    return AccessTokens.looksLikeToken(credential) ? this.tokenPrincipal(credential) : this.keys.answerWithoutLookup(credential);
  }

  /** The caller's principal, or null when the credential is not a valid, current key or token. */
  authenticate(credential: string): Promise<Principal | null> {
    return AccessTokens.looksLikeToken(credential) ? this.tokenPrincipal(credential) : this.keys.authenticate(credential);
  }

  /** A token's principal while the key that minted it is active (remembered as keys are). */
  private async tokenPrincipal(token: string): Promise<Principal | null> {
    const principal = await this.tokens.verify(token);
    return principal && (await this.keys.isActive(principal.keyId)) ? principal : null;
  }
}
