-- Bootstrap over SSH: one row per bootstrap (or upgrade) run of a host,
-- the output of each run line by line, and each host's pinned SSH host key.
CREATE TABLE boot_runs (
  id          TEXT PRIMARY KEY,
  host_id     TEXT NOT NULL,
  job_id      TEXT NOT NULL DEFAULT '',
  kind        TEXT NOT NULL,
  started_at  BIGINT NOT NULL,
  finished_at BIGINT,
  result      TEXT NOT NULL,
  error       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX boot_runs_host ON boot_runs (host_id, started_at);

CREATE TABLE boot_log (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  host_id TEXT NOT NULL,
  run_id  TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  ts      BIGINT NOT NULL,
  line    TEXT NOT NULL
);
-- A batch written again after a lost reply must not double the lines.
CREATE UNIQUE INDEX boot_log_run_seq ON boot_log (run_id, seq);
CREATE INDEX boot_log_host ON boot_log (host_id, id);

CREATE TABLE host_ssh_keys (
  host_id         TEXT PRIMARY KEY,
  public_key      TEXT NOT NULL,
  source          TEXT NOT NULL,
  pinned_at       BIGINT NOT NULL,
  last_contact_at BIGINT
);
