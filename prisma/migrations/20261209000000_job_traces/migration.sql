-- Tracing (src/telemetry/): the trace a job was created in, which its worker continues, and the
-- span that wrote its latest change, which the change feed's dispatch links to and webhook attempts
-- continue. Null with tracing off. Nullable columns without a default: no rewrite of the table,
-- and instances of the previous version (SELECT *, RETURNING *) ignore them during a rolling deploy.
-- The ALTER needs the table to itself for an instant; behind a transaction that holds Job for long
-- (an idle session in a transaction), it would queue every job read and write behind it. It gives up
-- instead: the start fails, saying so, and the next start tries again.
SET LOCAL lock_timeout = '10s';
ALTER TABLE "Job" ADD COLUMN "traceparent" TEXT, ADD COLUMN "writeTraceparent" TEXT;
