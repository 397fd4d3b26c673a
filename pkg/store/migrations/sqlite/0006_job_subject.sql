-- A job acts on a subject (a host or a project), so the table is "jobs"
-- and its key column says what it holds: subject_kind + subject_id.
-- The claim reads two partial indexes, each touching only the rows it
-- returns however deep the queue: due queued jobs in run order, and
-- running jobs by lease expiry (for takeovers).
DROP INDEX host_jobs_one_active;
DROP INDEX host_jobs_claim;
ALTER TABLE host_jobs RENAME TO jobs;
ALTER TABLE jobs RENAME COLUMN host_id TO subject_id;
ALTER TABLE jobs ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'host';
UPDATE jobs SET subject_kind = 'project' WHERE action LIKE 'project.%';
-- (SQLite cannot drop a column default; every insert names the kind.)
-- At most one active job per subject. Enqueue relies on this index (ON
-- CONFLICT) rather than on a racy check-then-insert.
CREATE UNIQUE INDEX jobs_one_active ON jobs (subject_kind, subject_id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_due ON jobs (run_after, created_at) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_subject ON jobs (subject_id, created_at);
