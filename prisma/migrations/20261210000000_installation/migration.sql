-- This database's identity (one row, made here): instances of other databases (or other schemas)
-- that share a feed bus (FEED_BUS) must never hear each other's changes, so the bus's subjects
-- carry it. A dump restored elsewhere carries it too: give the copy its own with
-- UPDATE "Installation" SET id = gen_random_uuid() before its gateways share a bus with the original's.
CREATE TABLE "Installation" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "Installation_pkey" PRIMARY KEY ("id")
);

INSERT INTO "Installation" DEFAULT VALUES;
