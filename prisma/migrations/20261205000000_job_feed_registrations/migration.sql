-- Live updates that only a workspace's own job writers can hold back.
--
-- Until now the change feed waited for the oldest transaction of the whole PostgreSQL server
-- (pg_snapshot_xmin), whatever it touched: a batch import in another table, a session left idle in
-- a transaction, autovacuum's ANALYZE, or a transaction in another database froze every
-- workspace's live updates for as long as it ran.
--
-- Now a transaction registers before it writes a job of a workspace, and only registered
-- transactions hold the feed back, only for their workspaces:
--
-- * Registering is a transaction-scoped advisory lock in shared mode (writers never wait for each
--   other), keyed (job_workspace_key(workspace), ticket), taken before each job row's change
--   position is drawn. The ticket is a value of job_change_cursor_seq drawn just before the lock,
--   rounded down to a multiple of 4,096: every position drawn afterwards is larger. The rounding
--   lets a transaction that writes many jobs hold a handful of locks instead of one per row (the
--   lock manager merges the same key) with no memory of its own (remembering registrations in a
--   transaction-local setting made every commit walk all settings: test/bench/RESULTS.md); the
--   price is that a registered transaction also holds back changes of its workspaces drawn up to
--   4,095 values before it registered.
-- * A change's position is now (epoch, changeSeq): changeSeq is drawn after registering, and
--   every row written from here on carries the same changeXid, the epoch, which is larger than
--   the transaction id of every row written before. So each cursor handed out before this
--   migration is smaller than every new one: a client resuming from an old cursor misses nothing.
-- * job_feed_horizon() reads, in this order, the sequence's last value, the registrations
--   (pg_locks), and the sequence again (to restore the tickets' high bits: a lock holds 32 of
--   them). Every change at or below that first value was drawn by a transaction that had registered before the locks were
--   read: unless it is among the registrations, it has ended, and a snapshot taken afterwards sees
--   it. A registered transaction can still commit changes above its ticket, and only in its own
--   workspaces. src/jobs/feed-frontier.ts applies the rule.
--
-- changeXmin is no longer written (instances of the previous version, still running during a
-- rolling deploy, read it); a later migration drops it.

-- Writers that started under the previous trigger finish before the epoch is chosen.
LOCK TABLE "Job" IN SHARE ROW EXCLUSIVE MODE;

-- The workspace part of a registration: the uuid's four 32-bit words folded by xor (any uuid
-- version keeps random bits in some word). src/jobs/workspace-key.ts computes the same in
-- JavaScript. Two workspaces may share a key: then each one's writers also hold back the other's
-- updates, never the reverse of what is safe.
CREATE FUNCTION "job_workspace_key"(workspace uuid) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (('x' || encode(uuid_send(workspace), 'hex'))::bit(128)::bit(32)
          # (('x' || encode(uuid_send(workspace), 'hex'))::bit(128) << 32)::bit(32)
          # (('x' || encode(uuid_send(workspace), 'hex'))::bit(128) << 64)::bit(32)
          # (('x' || encode(uuid_send(workspace), 'hex'))::bit(128) << 96)::bit(32))::integer
$$;

-- The feed finds the workspaces of a key when it reads one workspace's changes apart.
CREATE INDEX "Workspace_feedKey_idx" ON "Workspace"("job_workspace_key"(id));

DO $migration$
DECLARE
    epoch bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
BEGIN
    EXECUTE format($function$
        CREATE OR REPLACE FUNCTION "job_touch"() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            sequence regclass := format('%%I.job_change_cursor_seq', TG_TABLE_SCHEMA)::regclass;
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(job_workspace_key(NEW."workspaceId"), (nextval(sequence) >> 12)::bit(32)::integer);
            NEW."changeXid" := %s;
            NEW."changeSeq" := nextval(sequence);
            NEW."updatedAt" := date_trunc('milliseconds', clock_timestamp());
            IF TG_OP = 'UPDATE' THEN
                NEW."previousStatus" := OLD."status";
            ELSE
                NEW."previousStatus" := NULL;
            END IF;
            RETURN NEW;
        END
        $$
    $function$, epoch);

    EXECUTE format($function$
        CREATE FUNCTION "job_feed_horizon"(OUT epoch bigint, OUT "upTo" bigint, OUT keys integer[], OUT tickets bigint[], OUT pids integer[])
        LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            low bigint[];
            "afterLocks" bigint;
        BEGIN
            epoch := %s;
            SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO "upTo" FROM job_change_cursor_seq;
            SELECT coalesce(array_agg(l.classid::bigint::bit(32)::integer ORDER BY l.pid, l.classid, l.objid), '{}'),
                   coalesce(array_agg(l.objid::bigint ORDER BY l.pid, l.classid, l.objid), '{}'),
                   coalesce(array_agg(l.pid ORDER BY l.pid, l.classid, l.objid), '{}')
              INTO keys, low, pids
              FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.mode = 'ShareLock' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
            SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO "afterLocks" FROM job_change_cursor_seq;
            -- Each ticket is the largest multiple of 4,096 up to "afterLocks" whose quotient has the
            -- low 32 bits the lock carries (exact for tickets drawn fewer than 2^44 values ago).
            tickets := ARRAY(SELECT (("afterLocks" >> 12) - ((("afterLocks" >> 12) - t) & 4294967295)) << 12
                               FROM unnest(low) WITH ORDINALITY AS u(t, i) ORDER BY i);
        END
        $$
    $function$, epoch);
END
$migration$;
