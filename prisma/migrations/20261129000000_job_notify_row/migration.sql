-- The change feed's notifications carry the changed row itself (as JSON, without its cursor, which
-- travels as text so that no client reads a bigint through a float). A gateway that has dispatched
-- every change up to cursor - 1 dispatches this one without reading the database: under a steady
-- stream of updates the feed costs no query at all, on every instance. A row that would not fit a
-- NOTIFY payload (8,000 bytes) is announced with ids only, and gateways read it as before.
CREATE OR REPLACE FUNCTION "job_notify"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    announcement jsonb := jsonb_build_object('id', NEW."id", 'workspaceId', NEW."workspaceId", 'cursor', NEW."changeCursor"::text);
    payload text := (announcement || jsonb_build_object('row', to_jsonb(NEW) - 'changeCursor'))::text;
BEGIN
    IF octet_length(payload) >= 8000 THEN
        payload := announcement::text;
    END IF;
    PERFORM pg_notify('job_changes_' || TG_TABLE_SCHEMA, payload);
    RETURN NULL;
END
$$;
