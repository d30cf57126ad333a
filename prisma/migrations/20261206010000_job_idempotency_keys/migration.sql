-- createJob with an idempotencyKey creates its job once: a retry whose first attempt committed,
-- but whose answer was lost, gets that job back instead of a second one.
--
-- A key belongs to its workspace (keys of different workspaces never meet) and is remembered for
-- IDEMPOTENCY_TTL_MS after its job was created; past that, the same key creates a new job. The key
-- row is written before its job, in the job's transaction, so that concurrent requests with one key
-- wait on the primary key for the first and then read its job; the foreign key to the job is
-- therefore checked at commit. "inputHash" tells a retry (the same input) from a different job
-- reusing the key, which is refused. Deleting the job or the workspace forgets the key.
CREATE TABLE "JobIdempotencyKey" (
    "workspaceId" UUID NOT NULL,
    "key" TEXT NOT NULL,
    "inputHash" TEXT NOT NULL,
    "jobId" UUID NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "JobIdempotencyKey_pkey" PRIMARY KEY ("workspaceId", "key"),
    CONSTRAINT "JobIdempotencyKey_workspaceId_fkey" FOREIGN KEY ("workspaceId") REFERENCES "Workspace"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "JobIdempotencyKey_jobId_fkey" FOREIGN KEY ("jobId") REFERENCES "Job"("id") ON DELETE CASCADE ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED
);

-- Expired keys are deleted a batch at a time, oldest first; a job's key is found by its job on delete.
CREATE INDEX "JobIdempotencyKey_createdAt_idx" ON "JobIdempotencyKey"("createdAt");
CREATE INDEX "JobIdempotencyKey_jobId_idx" ON "JobIdempotencyKey"("jobId");
