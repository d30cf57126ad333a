-- The cursor column's default took a value from job_change_cursor_seq before job_touch() took the
-- advisory lock and the value it keeps, so every insert left a cursor that never committed. The
-- change feed reads across every such gap (it cannot tell a skipped cursor from a lost
-- notification), so each created job cost every gateway instance one read. job_touch() sets the
-- cursor on every insert and update, whoever writes; the default is never stored.
ALTER TABLE "Job" ALTER COLUMN "changeCursor" SET DEFAULT 0;
