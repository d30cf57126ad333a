-- Written by hand in the form `prisma migrate dev` produces (the schema engine cannot run on our
-- machines); test/schema-drift.test.ts checks it against prisma/schema.prisma.

-- CreateEnum
CREATE TYPE "JobStatus" AS ENUM ('RUNNING', 'COMPLETED', 'FAILED');

-- CreateSequence
CREATE SEQUENCE "job_change_cursor_seq";

-- CreateTable
CREATE TABLE "Workspace" (
    "id" UUID NOT NULL,
    "slug" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Workspace_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ApiKey" (
    "id" UUID NOT NULL,
    "workspaceId" UUID NOT NULL,
    "name" TEXT,
    "keyHash" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "scopes" TEXT[],
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revokedAt" TIMESTAMPTZ(3),

    CONSTRAINT "ApiKey_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Job" (
    "id" UUID NOT NULL,
    "workspaceId" UUID NOT NULL,
    "competitorId" TEXT,
    "type" TEXT NOT NULL,
    "displayTitle" TEXT NOT NULL,
    "status" "JobStatus" NOT NULL DEFAULT 'RUNNING',
    "progress" INTEGER NOT NULL DEFAULT 0,
    "currentStep" TEXT,
    "steps" JSONB NOT NULL DEFAULT '[]',
    "startedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMPTZ(3),
    "metadata" JSONB NOT NULL DEFAULT '{}',
    "error" TEXT,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "changeCursor" BIGINT NOT NULL DEFAULT nextval('job_change_cursor_seq'::regclass),

    CONSTRAINT "Job_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Workspace_slug_key" ON "Workspace"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "ApiKey_keyHash_key" ON "ApiKey"("keyHash");

-- CreateIndex
CREATE INDEX "ApiKey_workspaceId_idx" ON "ApiKey"("workspaceId");

-- CreateIndex
CREATE UNIQUE INDEX "Job_changeCursor_key" ON "Job"("changeCursor");

-- CreateIndex
CREATE INDEX "Job_workspaceId_startedAt_id_idx" ON "Job"("workspaceId", "startedAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "Job_workspaceId_competitorId_startedAt_id_idx" ON "Job"("workspaceId", "competitorId", "startedAt" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "Job_workspaceId_changeCursor_idx" ON "Job"("workspaceId", "changeCursor");

-- AddForeignKey
ALTER TABLE "ApiKey" ADD CONSTRAINT "ApiKey_workspaceId_fkey" FOREIGN KEY ("workspaceId") REFERENCES "Workspace"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Job" ADD CONSTRAINT "Job_workspaceId_fkey" FOREIGN KEY ("workspaceId") REFERENCES "Workspace"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Every insert and update of a job, from any writer, gets the next change cursor and a fresh
-- updatedAt. The transaction-scoped advisory lock makes cursors commit in the order they are handed
-- out, so a reader that has seen cursor N committed never later finds a smaller one appear: catch-up
-- by "changeCursor > last seen" can then never skip a row. (Job writes are single short statements,
-- so the lock is held for microseconds.)
CREATE FUNCTION "job_touch"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4242424242);
    NEW."changeCursor" := nextval(format('%I.job_change_cursor_seq', TG_TABLE_SCHEMA));
    NEW."updatedAt" := date_trunc('milliseconds', clock_timestamp());
    RETURN NEW;
END
$$;

CREATE TRIGGER "job_touch" BEFORE INSERT OR UPDATE ON "Job"
    FOR EACH ROW EXECUTE FUNCTION "job_touch"();
