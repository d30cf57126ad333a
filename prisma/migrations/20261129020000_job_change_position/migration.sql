-- Job writes no longer serialise. Until now job_touch() took one database-wide advisory lock
-- until commit, so that cursors committed in the order they were handed out, and job_notify()
-- sent a NOTIFY with every row, which takes PostgreSQL's own global lock at commit. Both made
-- every job write of the installation wait for the others.
--
-- Now a change's position is (changeXid, changeSeq): the id of the transaction that wrote it and a
-- number from job_change_cursor_seq, drawn while the row is locked (so per job it grows with every
-- write). Readers order changes by position but move past a position only once no transaction
-- with a smaller id can still commit: below pg_snapshot_xmin(pg_current_snapshot()) every
-- transaction has ended (PgQ's snapshot horizon). A transaction that commits late therefore holds
-- the feed back instead of being skipped, and no writer waits for another.
--
-- Clients see the position as one decimal string, changeXid * 10^19 + changeSeq (changeSeq fits
-- 19 digits). Rows written before this migration keep changeXid = 0, so their cursor is the
-- number clients already hold, and every cursor handed out before is smaller than every new one:
-- resuming from an old cursor sends what changed since, nothing is lost.
--
-- Wake-ups leave the write path: gateways announce their own writes after they commit (one NOTIFY
-- per batch, not per row, and none inside the job write), and read every FEED_CATCH_UP_INTERVAL_MS
-- for other writers.

DROP TRIGGER "job_notify" ON "Job";
DROP FUNCTION "job_notify"();

ALTER TABLE "Job" RENAME COLUMN "changeCursor" TO "changeSeq";
ALTER TABLE "Job" ADD COLUMN "changeXid" BIGINT NOT NULL DEFAULT 0;
-- The oldest transaction still running when the change was written. When that is the writer
-- itself, no older transaction can commit later: the change's position is final as soon as it has
-- committed, and a client can be given it at once (otherwise it gets a floor; see
-- src/jobs/change-position.ts).
ALTER TABLE "Job" ADD COLUMN "changeXmin" BIGINT NOT NULL DEFAULT 0;

DROP INDEX "Job_changeCursor_key";
DROP INDEX "Job_workspaceId_changeCursor_idx";
-- The feed reads every workspace's changes by position; a resumed subscription, one workspace's.
CREATE INDEX "Job_changeXid_changeSeq_idx" ON "Job"("changeXid", "changeSeq");
CREATE INDEX "Job_workspaceId_changeXid_changeSeq_idx" ON "Job"("workspaceId", "changeXid", "changeSeq");

CREATE OR REPLACE FUNCTION "job_touch"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."changeXid" := pg_current_xact_id()::text::bigint;
    NEW."changeXmin" := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    NEW."changeSeq" := nextval(format('%I.job_change_cursor_seq', TG_TABLE_SCHEMA));
    NEW."updatedAt" := date_trunc('milliseconds', clock_timestamp());
    IF TG_OP = 'UPDATE' THEN
        NEW."previousStatus" := OLD."status";
    ELSE
        NEW."previousStatus" := NULL;
    END IF;
    RETURN NEW;
END
$$;
