-- The keys that sign access tokens (short-lived, scoped tokens a backend mints for browsers), shared
-- by every instance so that a token minted by one is accepted by all.
--
-- An instance signs with the newest key while it is younger than ACCESS_TOKEN_KEY_ROTATION_MS, and
-- otherwise adds a new one; a key is accepted until its last token can have expired (rotation plus
-- ACCESS_TOKEN_MAX_TTL_MS after its creation), and deleted after that. "id" is the token's `kid`.
-- "secret" is 32 random bytes (base64url) for HMAC-SHA-256: whoever reads this table can mint
-- tokens, as whoever reads "ApiKey" could not (it holds hashes); guard database access accordingly.
CREATE TABLE "AccessTokenKey" (
    "id" TEXT NOT NULL,
    "secret" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "AccessTokenKey_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "AccessTokenKey_createdAt_idx" ON "AccessTokenKey"("createdAt");
