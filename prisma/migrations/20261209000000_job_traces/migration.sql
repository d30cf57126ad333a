-- Tracing (src/telemetry/): the trace a job was created in, which its worker continues, and the
-- span that wrote its latest change, which the change feed's dispatch links to and webhook attempts
-- continue. Null with tracing off. Nullable columns without a default: no rewrite of the table,
-- and instances of the previous version (SELECT *, RETURNING *) ignore them during a rolling deploy.
ALTER TABLE "Job" ADD COLUMN "traceparent" TEXT, ADD COLUMN "writeTraceparent" TEXT;
