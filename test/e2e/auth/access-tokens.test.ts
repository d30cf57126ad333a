import fc from 'fast-check';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AccessTokens } from '../../../src/auth/access-tokens.js';
import type { Principal } from '../../../src/auth/scopes.js';
import { ACCESS_TOKEN } from '../../../src/limits/fixed.js';
import { describeDb, describePostgres, freshDatabase } from '../../helpers/databases.js';
import { type TestApp, startTestApp } from '../../helpers/test-app.js';

const codeOf = async (promise: Promise<unknown>) =>
  promise.then(
    () => 'resolved',
    (error: Error & { extensions?: { code?: string } }) => error.extensions?.code ?? error.message,
  );

describeDb('access tokens: minting and verifying (auth/access-tokens.ts)', () => {
  let t: TestApp;
  let key: Principal;
  let tokens: AccessTokens;

  beforeAll(async () => {
    t = await startTestApp();
    key = (await t.app.apiKeys.authenticate(await t.createKey('tokens', ['jobs:read', 'jobs:cancel', 'jobs:write'])))!;
    tokens = t.app.accessTokens;
  });
  afterAll(() => t.close());

  /** The secret and id of the key the gateway signs with now, read as an attacker with the table would. */
  const signingKey = async () => {
    await tokens.mint(key, { scopes: ['jobs:read'] });
    const [row] = await t.app.database.sql.query<{ id: string; secret: string }>(`SELECT id, secret FROM "AccessTokenKey" ORDER BY "createdAt" DESC LIMIT 1`);
    return { kid: row!.id, secret: Buffer.from(row!.secret, 'base64url') };
  };

  it('mints a token that stands for its key, narrowed to the scopes and jobs asked for, until it expires', async () => {
    const before = Date.now();
    const { token, expiresAt } = await tokens.mint(key, { scopes: ['jobs:read'], restriction: { competitorId: 'c-1', type: 'collect' }, ttlMs: 60_000 });
    const after = Date.now();
    expect(AccessTokens.looksLikeToken(token)).toBe(true);
    // The lifetime from the moment of minting, in whole seconds (a JWT's exp), somewhere between the two clocks read.
    expect(expiresAt.getTime()).toBeGreaterThan(before + 59_000);
    expect(expiresAt.getTime()).toBeLessThanOrEqual(after + 60_000);
    const principal = await tokens.verify(token);
    expect(principal).toMatchObject({
      keyId: key.keyId,
      workspaceId: key.workspaceId,
      token: { expiresAt: expiresAt.getTime(), restriction: { competitorId: 'c-1', type: 'collect' } },
    });
    expect([...principal!.scopes]).toEqual(['jobs:read']);
    // Fifteen minutes unless asked otherwise; no restriction: all the workspace's jobs.
    const plain = await tokens.mint(key, { scopes: ['jobs:read', 'jobs:cancel'] });
    expect(plain.expiresAt.getTime() - Date.now()).toBeGreaterThan(14 * 60_000);
    expect((await tokens.verify(plain.token))?.token?.restriction).toEqual({});
  });

  it('refuses to mint what the key may not give: a scope it lacks or jobs:write, no scope, a lifetime out of range, a token minting another', async () => {
    const reader = (await t.app.apiKeys.authenticate(await t.createKey('tokens', ['jobs:read'])))!;
    expect(await codeOf(tokens.mint(reader, { scopes: ['jobs:cancel'] }))).toBe('FORBIDDEN');
    expect(await codeOf(tokens.mint(key, { scopes: ['jobs:write'] }))).toBe('BAD_USER_INPUT');
    expect(await codeOf(tokens.mint(key, { scopes: ['jobs:delete'] }))).toBe('BAD_USER_INPUT');
    expect(await codeOf(tokens.mint(key, { scopes: [] }))).toBe('BAD_USER_INPUT');
    for (const ttlMs of [0, 9_999, 3_600_001, 1.5, -1])
      expect(await codeOf(tokens.mint(key, { scopes: ['jobs:read'], ttlMs })), String(ttlMs)).toBe('BAD_USER_INPUT');
    expect(await codeOf(tokens.mint(key, { scopes: ['jobs:read'], ttlMs: 3_600_000 }))).toBe('resolved');
    const asToken = await tokens.verify((await tokens.mint(key, { scopes: ['jobs:read'] })).token);
    expect(await codeOf(tokens.mint(asToken!, { scopes: ['jobs:read'] }))).toBe('FORBIDDEN');
  });

  it('mints at most a burst of tokens per key at once, then refuses with RATE_LIMITED until the bucket refills', async () => {
    const minter = (await t.app.apiKeys.authenticate(await t.createKey('tokens', ['jobs:read'])))!;
    const outcomes = await Promise.all(
      Array.from({ length: ACCESS_TOKEN.mintsPerKey.burst + 50 }, () => codeOf(tokens.mint(minter, { scopes: ['jobs:read'] }))),
    );
    const minted = outcomes.filter((outcome) => outcome === 'resolved').length;
    expect(minted).toBeGreaterThanOrEqual(ACCESS_TOKEN.mintsPerKey.burst);
    expect(minted).toBeLessThan(ACCESS_TOKEN.mintsPerKey.burst + 50);
    expect(new Set(outcomes.filter((outcome) => outcome !== 'resolved'))).toEqual(new Set(['RATE_LIMITED']));
    // Another key's bucket is its own.
    expect(await codeOf(tokens.mint(key, { scopes: ['jobs:read'] }))).toBe('resolved');
  });

  it('accepts nothing else: another algorithm, alg none, another secret, expired, not yet valid, another issuer, an unknown key', async () => {
    const { kid, secret } = await signingKey();
    const now = Math.floor(Date.now() / 1000);
    const claims = { ws: key.workspaceId, scp: ['jobs:read'] };
    const signed = (header: Record<string, unknown>, times: { iat: number; nbf: number; exp: number }, with_: Uint8Array = secret, issuer = 'jobs-gateway') =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid, ...header })
        .setIssuer(issuer)
        .setAudience('jobs-gateway')
        .setSubject(key.keyId)
        .setJti('forged')
        .setIssuedAt(times.iat)
        .setNotBefore(times.nbf)
        .setExpirationTime(times.exp)
        .sign(with_);
    const valid = { iat: now, nbf: now, exp: now + 600 };
    // The control: the same construction with the real key and times is accepted.
    expect(await tokens.verify(await signed({}, valid))).not.toBeNull();
    const refused = [
      await signed({ alg: 'HS512' }, valid),
      new UnsecuredJWT(claims)
        .setIssuer('jobs-gateway')
        .setAudience('jobs-gateway')
        .setSubject(key.keyId)
        .setJti('x')
        .setIssuedAt()
        .setExpirationTime('10m')
        .encode(),
      await signed({}, valid, new Uint8Array(32).fill(7)),
      await signed({}, { iat: now - 120, nbf: now - 120, exp: now - 60 }),
      await signed({}, { iat: now, nbf: now + 60, exp: now + 600 }),
      await signed({}, valid, secret, 'someone-else'),
      await signed({ kid: 'no-such-key' }, valid),
    ];
    for (const [i, token] of refused.entries()) expect(await tokens.verify(token), `token ${i}`).toBeNull();
  });

  it('answers null, never throws, for any bytes, any alteration of a real token, and anything too long (property)', async () => {
    const { token } = await tokens.mint(key, { scopes: ['jobs:read'], restriction: { jobId: '00000000-0000-0000-0000-000000000001' } });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.stringMatching(/^[A-Za-z0-9_-]{1,80}\.[A-Za-z0-9_-]{0,200}\.[A-Za-z0-9_-]{0,80}$/),
          // Any character but the last: the signature's last base64url character carries two unused bits.
          fc
            .tuple(fc.nat({ max: token.length - 2 }), fc.constantFrom(...'ABCabc019-_.='))
            .map(([at, c]) => token.slice(0, at) + c + token.slice(at + 1))
            .filter((altered) => altered !== token),
          fc.nat({ max: token.length - 1 }).map((at) => token.slice(0, at)),
          fc.constant(`${token}${'A'.repeat(5_000)}`),
        ),
        async (credential) => {
          expect(await tokens.verify(credential)).toBeNull();
        },
      ),
      { numRuns: 300 },
    );
    expect(await tokens.verify(token)).not.toBeNull();
  });

  it('rotates its signing key, accepting an older key’s tokens until they can have expired, then forgetting the key', async () => {
    const { token: old } = await tokens.mint(key, { scopes: ['jobs:read'] });
    const [{ id: oldKid }] = (await t.app.database.sql.query<{ id: string }>(`SELECT id FROM "AccessTokenKey" ORDER BY "createdAt" DESC LIMIT 1`)) as [
      { id: string },
    ];
    // The key is past its rotation (a day by default): the next token is signed by a new one.
    await t.app.database.sql.query(`UPDATE "AccessTokenKey" SET "createdAt" = now() - interval '24 hours 30 minutes' WHERE id = $1`, [oldKid]);
    const fresh = new AccessTokens(t.app.database.sql, { maxTtlMs: 3_600_000, keyRotationMs: 86_400_000 });
    const { token: next } = await fresh.mint(key, { scopes: ['jobs:read'] });
    expect(JSON.parse(Buffer.from(next.split('.')[0]!, 'base64url').toString()).kid).not.toBe(oldKid);
    expect(await fresh.verify(old)).not.toBeNull();
    // Past rotation plus the longest lifetime, no token of the key can be valid: refused, and
    // deleted when the next key is made (the others are past their rotation too).
    await t.app.database.sql.query(`UPDATE "AccessTokenKey" SET "createdAt" = now() - interval '24 hours 30 minutes' WHERE id <> $1`, [oldKid]);
    await t.app.database.sql.query(`UPDATE "AccessTokenKey" SET "createdAt" = now() - interval '26 hours' WHERE id = $1`, [oldKid]);
    const later = new AccessTokens(t.app.database.sql, { maxTtlMs: 3_600_000, keyRotationMs: 86_400_000 });
    expect(await later.verify(old)).toBeNull();
    expect(await later.verify(next)).not.toBeNull();
    await later.mint(key, { scopes: ['jobs:read'] });
    expect(await t.app.database.sql.query(`SELECT 1 FROM "AccessTokenKey" WHERE id = $1`, [oldKid])).toEqual([]);
  });
});

describePostgres('access tokens across instances', () => {
  it('are accepted by every instance on the database, whichever minted them', async () => {
    const database = await freshDatabase();
    const first = await startTestApp({ database });
    const second = await startTestApp({ database });
    try {
      const key = (await first.app.apiKeys.authenticate(await first.createKey('shared', ['jobs:read'])))!;
      const { token } = await first.app.accessTokens.mint(key, { scopes: ['jobs:read'] });
      expect(await second.app.accessTokens.verify(token)).toMatchObject({ keyId: key.keyId, workspaceId: key.workspaceId });
      const { token: back } = await second.app.accessTokens.mint(key, { scopes: ['jobs:read'] });
      expect(await first.app.accessTokens.verify(back)).not.toBeNull();
    } finally {
      await first.close();
      await second.close();
      await database.drop();
    }
  });
});
