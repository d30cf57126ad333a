-- The change feed: every committed insert or update of a job notifies the channel
-- "job_changes_<schema>" with ids and the change cursor only (NOTIFY payloads are capped at 8,000
-- bytes; subscribers read the job itself). Gateways LISTEN and catch up by cursor.

-- AlterTable
ALTER TABLE "Job" ADD COLUMN "previousStatus" "JobStatus";

-- A subscriber filtering on status must see a job leave that status (a dashboard watching RUNNING
-- jobs sees them finish), so each row keeps the status it had before its latest change.
CREATE OR REPLACE FUNCTION "job_touch"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4242424242);
    NEW."changeCursor" := nextval(format('%I.job_change_cursor_seq', TG_TABLE_SCHEMA));
    NEW."updatedAt" := date_trunc('milliseconds', clock_timestamp());
    IF TG_OP = 'UPDATE' THEN
        NEW."previousStatus" := OLD."status";
    ELSE
        NEW."previousStatus" := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION "job_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'job_changes_' || TG_TABLE_SCHEMA,
        json_build_object('id', NEW."id", 'workspaceId', NEW."workspaceId", 'cursor', NEW."changeCursor"::text)::text
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER "job_notify" AFTER INSERT OR UPDATE ON "Job"
    FOR EACH ROW EXECUTE FUNCTION "job_notify"();
