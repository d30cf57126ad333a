-- Jobs whose worker died end as FAILED ("stalled") instead of running forever.
--
-- A RUNNING job holds a lease that ends "heartbeatTimeoutMs" after its latest change or heartbeat.
-- Every change renews it, whoever writes (the gateway, another instance, SQL): job_lease() below
-- sets it wherever job_touch() records a change. A heartbeat only moves "leaseExpiresAt": that
-- UPDATE is not a change (job_touch() does not run for it), so the change feed, subscribers and
-- cached reads never see it. Gateways fail the jobs whose lease lapsed (src/jobs/stall-sweeper.ts),
-- with one conditional write each, so that a job is failed once however many instances sweep.

-- Existing jobs get the default timeout; a running one's lease starts now (a non-volatile default
-- is stored once, without rewriting the table or firing a trigger; ended jobs never read it).
ALTER TABLE "Job" ADD COLUMN "heartbeatTimeoutMs" INTEGER NOT NULL DEFAULT 300000;
ALTER TABLE "Job" ADD COLUMN "leaseExpiresAt" TIMESTAMPTZ(3) DEFAULT (now() + interval '300 seconds');
ALTER TABLE "Job" ALTER COLUMN "leaseExpiresAt" DROP DEFAULT;

-- The sweep's one query: running jobs by lease end, however many ended jobs the table holds.
CREATE INDEX "Job_running_leaseExpiresAt_idx" ON "Job"("leaseExpiresAt") WHERE status = 'RUNNING';

-- A change of a running job renews its lease; a job that ends has none.
CREATE FUNCTION "job_lease"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'RUNNING' THEN
        NEW."leaseExpiresAt" := date_trunc('milliseconds', clock_timestamp()) + NEW."heartbeatTimeoutMs" * interval '1 millisecond';
    ELSE
        NEW."leaseExpiresAt" := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- BEFORE triggers run in the order of their names: job_touch records the change first, then
-- job_touch_lease renews the lease of a row whose change was recorded (its changeSeq moved).
-- An UPDATE that moves only the lease (a heartbeat) records no change. One that moves the lease and
-- anything else is a change like any other: comparing the rows is only paid when the lease moved.
DROP TRIGGER "job_touch" ON "Job";
CREATE TRIGGER "job_touch" BEFORE INSERT ON "Job"
    FOR EACH ROW EXECUTE FUNCTION "job_touch"();
CREATE TRIGGER "job_touch_change" BEFORE UPDATE ON "Job"
    FOR EACH ROW
    WHEN (NEW."leaseExpiresAt" IS NOT DISTINCT FROM OLD."leaseExpiresAt"
          OR (to_jsonb(NEW) - 'leaseExpiresAt') IS DISTINCT FROM (to_jsonb(OLD) - 'leaseExpiresAt'))
    EXECUTE FUNCTION "job_touch"();
CREATE TRIGGER "job_touch_lease" BEFORE INSERT OR UPDATE ON "Job"
    FOR EACH ROW EXECUTE FUNCTION "job_lease"();
