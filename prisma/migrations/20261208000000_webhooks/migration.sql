-- Webhooks: servers are told when a job is created, progresses or ends, at least once and in order
-- per job, whichever instance (or other writer) changed the job.
--
-- The outbox is written by the job's own write: a trigger on "Job" records a delivery per matching
-- endpoint in the same transaction as the change (as Hasura's event triggers do), so a crash after
-- the commit loses nothing and a rolled-back change sends nothing. A workspace with no endpoint pays
-- one probe of "WebhookEndpoint_workspaceId_idx" per visible change; heartbeats, which change no
-- field a receiver sees, do not fire the trigger at all.
--
-- Each delivery row is one event for one endpoint, numbered by "id" in the order its job's changes
-- committed (writes of one job take its row lock in turn). src/webhooks/delivery-queue.ts sends
-- only the oldest pending delivery of each (endpoint, job), so a job's events arrive in order, and
-- claims it by moving "nextAttemptAt" past the attempt's deadline: an instance that dies mid-attempt
-- leaves it due again, sent again with the same "eventId" (the webhook-id a receiver dedupes by).

CREATE TABLE "WebhookEndpoint" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "workspaceId" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "description" TEXT,
    -- Event names (job.created, job.progress, job.completed, job.failed).
    "events" TEXT[],
    -- Only jobs of this competitor and/or this type, when set.
    "competitorId" TEXT,
    "jobType" TEXT,
    -- job.progress is sent at most once per this many milliseconds per job (WEBHOOK_PROGRESS_INTERVAL_MS when created).
    "progressIntervalMs" INTEGER NOT NULL,
    -- Standard Webhooks secrets (whsec_ + base64). After a rotation the previous one also signs until "previousSecretUntil".
    "secret" TEXT NOT NULL,
    "previousSecret" TEXT,
    "previousSecretUntil" TIMESTAMPTZ(3),
    -- Set while deliveries fail: the first failure since the last success.
    "failingSince" TIMESTAMPTZ(3),
    -- A disabled endpoint records and sends nothing until enabled again.
    "disabledAt" TIMESTAMPTZ(3),
    "disabledReason" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "updatedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CONSTRAINT "WebhookEndpoint_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "WebhookEndpoint_workspaceId_fkey" FOREIGN KEY ("workspaceId") REFERENCES "Workspace"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "WebhookEndpoint_workspaceId_idx" ON "WebhookEndpoint"("workspaceId");

CREATE TABLE "WebhookDelivery" (
    "id" BIGSERIAL NOT NULL,
    "endpointId" UUID NOT NULL,
    -- The event: one id per change, the same for every endpoint it goes to and every attempt.
    "eventId" UUID NOT NULL,
    "eventType" TEXT NOT NULL,
    "jobId" UUID NOT NULL,
    -- The job as the change left it (to_jsonb of the row, its bigints as text).
    "job" JSONB NOT NULL,
    -- pending (to be sent, or being sent), delivered, or failed (gave up).
    "state" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "nextAttemptAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "lastAttemptAt" TIMESTAMPTZ(3),
    "lastStatus" INTEGER,
    "lastError" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    -- Retries stop WEBHOOK_RETRY_FOR_MS after this: the event's time, or a redelivery's.
    "queuedAt" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    "endedAt" TIMESTAMPTZ(3),
    CONSTRAINT "WebhookDelivery_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "WebhookDelivery_state_check" CHECK ("state" IN ('pending', 'delivered', 'failed')),
    CONSTRAINT "WebhookDelivery_endpointId_fkey" FOREIGN KEY ("endpointId") REFERENCES "WebhookEndpoint"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
-- The delivery log, newest first, per endpoint.
CREATE INDEX "WebhookDelivery_endpointId_id_idx" ON "WebhookDelivery"("endpointId", "id" DESC);
-- Pending deliveries only (a small set when receivers keep up): what is due, the head of each job's
-- queue, the oldest undelivered (a metric), and ended ones past their retention (the sweep).
CREATE INDEX "WebhookDelivery_due_idx" ON "WebhookDelivery"("nextAttemptAt", "id") WHERE "state" = 'pending';
CREATE INDEX "WebhookDelivery_queue_idx" ON "WebhookDelivery"("endpointId", "jobId", "id") WHERE "state" = 'pending';
CREATE INDEX "WebhookDelivery_pending_createdAt_idx" ON "WebhookDelivery"("createdAt") WHERE "state" = 'pending';
CREATE INDEX "WebhookDelivery_ended_idx" ON "WebhookDelivery"("endedAt") WHERE "state" <> 'pending';
-- job.progress not attempted yet: a newer state of the same job replaces it in place (coalescing).
CREATE UNIQUE INDEX "WebhookDelivery_progress_unsent_key" ON "WebhookDelivery"("endpointId", "jobId")
    WHERE "eventType" = 'job.progress' AND "state" = 'pending' AND "attempts" = 0;

CREATE FUNCTION "job_webhook_events"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    event text;
    event_id uuid := gen_random_uuid();
BEGIN
    IF TG_OP = 'INSERT' THEN
        event := 'job.created';
    ELSIF NEW."status" = 'COMPLETED' THEN
        event := 'job.completed';
    ELSIF NEW."status" = 'FAILED' THEN
        event := 'job.failed';
    ELSE
        event := 'job.progress';
    END IF;

    IF event = 'job.progress' THEN
        -- At most one unsent progress event per job and endpoint: it waits out the endpoint's
        -- interval from the first change, taking every later state until it is sent.
        INSERT INTO "WebhookDelivery" AS d ("endpointId", "eventId", "eventType", "jobId", "job", "nextAttemptAt")
        SELECT e."id", event_id, event, NEW."id", job_webhook_snapshot(NEW), now() + e."progressIntervalMs" * interval '1 millisecond'
          FROM "WebhookEndpoint" e
         WHERE e."workspaceId" = NEW."workspaceId" AND e."disabledAt" IS NULL AND event = ANY(e."events")
           AND (e."competitorId" IS NULL OR e."competitorId" = NEW."competitorId") AND (e."jobType" IS NULL OR e."jobType" = NEW."type")
        ON CONFLICT ("endpointId", "jobId") WHERE "eventType" = 'job.progress' AND "state" = 'pending' AND "attempts" = 0
        DO UPDATE SET "job" = EXCLUDED."job";
        RETURN NULL;
    END IF;

    WITH endpoints AS (
        SELECT e."id" FROM "WebhookEndpoint" e
         WHERE e."workspaceId" = NEW."workspaceId" AND e."disabledAt" IS NULL AND event = ANY(e."events")
           AND (e."competitorId" IS NULL OR e."competitorId" = NEW."competitorId") AND (e."jobType" IS NULL OR e."jobType" = NEW."type")
    ), superseded AS (
        -- The ending carries the final state: an unsent progress event of the job goes with it.
        DELETE FROM "WebhookDelivery" d USING endpoints
         WHERE d."endpointId" = endpoints."id" AND d."jobId" = NEW."id"
           AND d."eventType" = 'job.progress' AND d."state" = 'pending' AND d."attempts" = 0
    )
    INSERT INTO "WebhookDelivery" ("endpointId", "eventId", "eventType", "jobId", "job")
    SELECT endpoints."id", event_id, event, NEW."id", job_webhook_snapshot(NEW) FROM endpoints;
    RETURN NULL;
END
$$;

-- The job as JSON, with the bigints as text (JSON numbers lose digits past 2^53 in JavaScript).
CREATE FUNCTION "job_webhook_snapshot"(job "Job") RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(job) || jsonb_build_object('changeXid', job."changeXid"::text, 'changeSeq', job."changeSeq"::text, 'changeXmin', job."changeXmin"::text)
$$;

CREATE TRIGGER "job_webhook_created" AFTER INSERT ON "Job"
    FOR EACH ROW EXECUTE FUNCTION "job_webhook_events"();
-- Only changes a receiver sees: a heartbeat (the lease alone) fires nothing.
CREATE TRIGGER "job_webhook_changed" AFTER UPDATE ON "Job"
    FOR EACH ROW WHEN ((OLD."status", OLD."progress", OLD."currentStep", OLD."steps", OLD."metadata", OLD."error")
                       IS DISTINCT FROM (NEW."status", NEW."progress", NEW."currentStep", NEW."steps", NEW."metadata", NEW."error"))
    EXECUTE FUNCTION "job_webhook_events"();
